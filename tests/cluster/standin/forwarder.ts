/**
 * @module Stand-in node (see ./metaq): forwards a client port to node 1's client port with a
 * LinkProxy and writes the ports file once listening. Runs until killed.
 */
import * as fs from "node:fs";
import process from "node:process";
import { LinkProxy } from "../link_proxy.ts";
import { Random } from "../random.ts";

const [port, target, portsFile] = process.argv.slice(2);
const proxy = await LinkProxy.listen({
  name: "stand-in",
  port: Number(port),
  targetPort: Number(target),
  random: new Random(1),
});
fs.writeFileSync(portsFile, JSON.stringify({ port: proxy.port }));
process.on("SIGTERM", () => void proxy.close().then(() => process.exit(0)));
