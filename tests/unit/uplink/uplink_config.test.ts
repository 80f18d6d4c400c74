import { expect, test } from "bun:test";
import { buildConfig } from "../../../lib/config/config.ts";
import { uplinkWithHubs } from "../../../lib/config/uplink_config.ts";

const config = (text: string) => buildConfig({ fileText: text });

test("[uplink] reads every key, with defaults for the rest", () => {
  const uplink = config(`[uplink]
hubs=10.0.0.1:8123, 10.0.0.2:8123
topics=orders,log-*
prefix=site-17.
keepPartition=false
site=site-17
user=edge
tokenFile=/etc/metaq/edge.token
tls=true
tlsCaFile=/etc/metaq/ca.pem
batchBytes=256*1024
maxBacklogBytes=10*1024*1024*1024
maxBacklogAgeMs=86400000
`).uplink!;
  expect(uplink).toMatchObject({
    hubs: ["10.0.0.1:8123", "10.0.0.2:8123"],
    topics: ["orders", "log-*"],
    prefix: "site-17.",
    keepPartition: false,
    site: "site-17",
    user: "edge",
    tokenFile: "/etc/metaq/edge.token",
    tls: true,
    batchBytes: 262144,
    maxBacklogBytes: 10 * 1024 ** 3,
    maxBacklogAgeMs: 86_400_000,
    requestTimeoutMs: 10_000,
    maxInFlightBytes: 16 * 1024 * 1024,
  });
  expect(config("[system]\nbrokerId=1\n").uplink).toBeUndefined();
});

test("[uplink] mistakes are refused with the key named", () => {
  const cases: [string, string][] = [
    ["hub=1.2.3.4:5", "Cannot use unknown key 'hub' in [uplink] line 2 (did you mean 'hubs'?)"],
    ["hubs=nowhere", "Cannot use hub address 'nowhere': expected host:port"],
    ["prefix=-bad", "Cannot use [uplink] prefix=-bad"],
    ["site=a b", "Cannot use [uplink] site=a b"],
    ["topics=a/b", "Cannot use [uplink] topics=a/b"],
    ["user=edge", "give user= together with token= or tokenFile="],
    ["tlsCaFile=ca.pem", "without tls=true"],
    ["batchBytes=10", "must be between 1024"],
    ["keepPartition=perhaps", "Cannot use [uplink] keepPartition=perhaps"],
  ];
  for (const [line, message] of cases) {
    expect(() => config(`[uplink]\n${line}\n`), line).toThrow(message);
  }
});

test("--uplink gives the hubs, over the section's", () => {
  const section = config("[uplink]\nprefix=p.\n").uplink!;
  expect(section.hubs).toEqual([]);
  const flagged = uplinkWithHubs(section, "127.0.0.1:9000,hub:9001");
  expect(flagged.hubs).toEqual(["127.0.0.1:9000", "hub:9001"]);
  expect(flagged.prefix).toBe("p.");
  expect(uplinkWithHubs(undefined, "h:1").topics).toEqual(["*"]);
  expect(() => uplinkWithHubs(undefined, "")).toThrow("Cannot use --uplink");
});
