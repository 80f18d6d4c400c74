/**
 * @module Entry point of the `metaq` executable (bun build --compile) and of `deno run main.ts`:
 * hands the arguments to the command table and exits with its code.
 */
import * as process from "node:process";
import { runCli } from "./cli/mod.ts";

const code = await runCli(process.argv.slice(2));
process.exit(code);
