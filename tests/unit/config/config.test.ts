import { expect, test } from "bun:test";
import {
  buildConfig,
  ConfigError,
  topicSettings,
  withZooKeeperFlags,
} from "../../../lib/config/config.ts";
import { nextFireMs, parseCron } from "../../../lib/config/cron.ts";
import { evaluateInteger } from "../../../lib/config/expression.ts";
import { topicNameProblem } from "../../../lib/config/names.ts";
import { parseDeletePolicy } from "../../../lib/config/retention_policy.ts";
import { groupNameProblem } from "../../../lib/protocol/names.ts";

const METAQ_SERVER_INI = `
[system]
brokerId=0
numPartitions=1
serverPort=8123
dashboardHttpPort=8120
unflushThreshold=0
unflushInterval=10000
maxSegmentSize=1024*1024*1024
maxTransferSize=1024*1024
deletePolicy=delete,168
deleteWhen=0 0 6,18 * * ?
flushTxLogAtCommit=1
stat=true
; comments like this are allowed
# and this

[zookeeper]
zk.zkConnect=localhost:2181
zk.zkSessionTimeoutMs=30000
zk.zkConnectionTimeoutMs=30000
zk.zkSyncTimeMs=5000

[topic=test]
[topic=meta-test]
numPartitions=4
deletePolicy=archive,10m,true
group.slow=com.example.SlowFilter
[topic=log-*]
unflushThreshold=1000
stat=
`;

test("MetaQ's own server.ini is accepted as is", () => {
  const config = buildConfig({ fileText: METAQ_SERVER_INI });
  expect(config.system.maxSegmentSize).toBe(1024 * 1024 * 1024);
  expect(config.system.maxTransferSize).toBe(1048576);
  expect(config.system.stat).toBe(true);
  expect(config.topics.map((t) => t.pattern)).toEqual(["test", "meta-test", "log-*"]);
  // Its [zookeeper] section turns ZooKeeper mode on, as it does for MetaQ's broker.
  expect(config.zookeeper).toMatchObject({
    enable: true,
    connect: "localhost:2181",
    root: "/meta",
  });
});

test("[zookeeper] takes zk.* keys (and MetaQ's [system] keys, ignored there); flags win", () => {
  const fileText = "[zookeeper]\nzk.zkConnect=a:1\nzk.zkRoot=/x\nbrokerId=9\n";
  const config = withZooKeeperFlags(buildConfig({ fileText }), {
    connect: "b:2",
    sessionTimeoutMs: "4000",
    brokerId: "6",
  });
  expect(config.zookeeper).toMatchObject({ connect: "b:2", root: "/x", sessionTimeoutMs: 4000 });
  expect(config.system.brokerId).toBe(0);
  expect(config.system.zkBrokerId).toBe(6);
  expect(() => withZooKeeperFlags(config, { brokerId: "2000" })).toThrow("zkBrokerId=2000");
  expect(() => buildConfig({ fileText: "[zookeeper]\nzk.zkConect=a:1\n" })).toThrow(
    "Cannot use unknown key 'zk.zkConect' in [zookeeper] line 2 (did you mean 'zk.zkConnect'?)",
  );
  expect(buildConfig({}).zookeeper.connect).toBe("");
});

test("topic settings inherit from [system] and wildcards match whole names", () => {
  const config = buildConfig({ fileText: METAQ_SERVER_INI });
  expect(topicSettings(config, "meta-test")).toMatchObject({ numPartitions: 4, stat: true });
  expect(topicSettings(config, "meta-test")?.deletePolicy).toMatchObject({
    kind: "archive",
    compress: true,
    maxAgeMs: 600_000,
  });
  expect(topicSettings(config, "meta-test")?.groupFilters.get("slow")).toBe(
    "com.example.SlowFilter",
  );
  expect(topicSettings(config, "log-app")).toMatchObject({
    numPartitions: 1,
    unflushThreshold: 1000,
    stat: true,
  });
  expect(topicSettings(config, "xlog-app")).toBeUndefined();
  expect(topicSettings(config, "other")).toBeUndefined();
});

test("without a file every valid topic is accepted with defaults", () => {
  const config = buildConfig({});
  expect(config.system).toMatchObject({
    serverPort: 8123,
    dataPath: "./data",
    unflushThreshold: 0,
    numPartitions: 1,
  });
  expect(config.system.dataLogPath).toBe("./data");
  expect(topicSettings(config, "anything")?.numPartitions).toBe(1);
});

test("command-line overrides win over the file", () => {
  const config = buildConfig({
    fileText: METAQ_SERVER_INI,
    overrides: { serverPort: "0", numPartitions: "3" },
  });
  expect(config.system.serverPort).toBe(0);
  expect(topicSettings(config, "test")?.numPartitions).toBe(3);
});

test("unknown keys are refused with a did-you-mean", () => {
  expect(() => buildConfig({ fileText: "[system]\nnumPartition=2\n" })).toThrow(
    "Cannot use unknown key 'numPartition' in [system] line 2 (did you mean 'numPartitions'?)",
  );
  expect(() => buildConfig({ fileText: "[topic=a]\nunflushTreshold=2\n" })).toThrow(
    "did you mean 'unflushThreshold'",
  );
  expect(() => buildConfig({ overrides: { nothingLikeIt: "1" } })).toThrow(ConfigError);
});

test("bad values name the key", () => {
  expect(() => buildConfig({ fileText: "[system]\nbrokerId=2000\n" })).toThrow(
    "brokerId=2000: must be between 0 and 1023",
  );
  expect(() => buildConfig({ fileText: "[system]\nstat=yes\n" })).toThrow("Cannot use stat");
  expect(() => buildConfig({ fileText: "[system]\ndeleteWhen=0 0 L * * ?\n" })).toThrow(
    "Cannot use deleteWhen",
  );
  expect(() => buildConfig({ fileText: "[mystery]\n" })).toThrow("Cannot read section [mystery]");
  expect(() => buildConfig({ fileText: "brokerId=1\n" })).toThrow("outside of any [section]");
});

test("numeric values are evaluated as integer expressions and nothing else", () => {
  expect(evaluateInteger("1024*1024")).toBe(1048576);
  expect(evaluateInteger("(1+2)*3 - 4/3")).toBe(8);
  expect(evaluateInteger("-7 % 3")).toBe(-1);
  expect(() => evaluateInteger("process.exit()")).toThrow();
  expect(() => evaluateInteger("1/0")).toThrow("division by zero");
  expect(() => evaluateInteger("")).toThrow();
});

test("delete policies parse MetaQ's forms", () => {
  expect(parseDeletePolicy("delete,168")).toMatchObject({
    kind: "delete",
    maxAgeMs: 168 * 3_600_000,
  });
  expect(parseDeletePolicy("delete,30s")).toMatchObject({ maxAgeMs: 30_000 });
  expect(parseDeletePolicy("archive,2h")).toMatchObject({
    kind: "archive",
    compress: false,
    maxAgeMs: 7_200_000,
  });
  expect(parseDeletePolicy("archive,5m,true")).toMatchObject({ compress: true, maxAgeMs: 300_000 });
  for (const bad of ["delete", "delete,x", "keep,1", "delete,1,2", "archive,1,maybe"]) {
    expect(() => parseDeletePolicy(bad)).toThrow();
  }
});

test("quartz cron schedules find their next firing", () => {
  const schedule = parseCron("0 0 6,18 * * ?");
  const base = new Date(2026, 10, 25, 7, 30, 0).getTime();
  expect(new Date(nextFireMs(schedule, base)!)).toEqual(new Date(2026, 10, 25, 18, 0, 0));
  const evening = new Date(2026, 10, 25, 18, 0, 0).getTime();
  expect(new Date(nextFireMs(schedule, evening)!)).toEqual(new Date(2026, 10, 26, 6, 0, 0));
  const everyTen = parseCron("*/10 * * * * ?");
  expect(nextFireMs(everyTen, new Date(2026, 0, 1, 0, 0, 3).getTime())).toBe(
    new Date(2026, 0, 1, 0, 0, 10).getTime(),
  );
  const monday = parseCron("0 30 2 ? * MON");
  expect(new Date(nextFireMs(monday, new Date(2026, 10, 25).getTime())!)).toEqual(
    new Date(2026, 10, 30, 2, 30),
  );
  expect(() => parseCron("0 0 6 * *")).toThrow("expected 6 or 7 fields");
  expect(() => parseCron("0 0 6 1 * MON")).toThrow("either a day-of-month or a day-of-week");
  expect(() => parseCron("0 0 25 * * ?")).toThrow("outside 0-23");
});

test("topic and group names that could touch the file system badly are refused", () => {
  for (const good of ["orders", "meta-test", "a.b_c-9", "x".repeat(200)]) {
    expect(topicNameProblem(good)).toBeUndefined();
  }
  for (
    const bad of [
      "",
      "../etc",
      "a/b",
      "a\\b",
      ".hidden",
      "-dash",
      "sp ace",
      "tab\t",
      "x".repeat(201),
      "a*b",
      "nul\0",
    ]
  ) {
    expect(topicNameProblem(bad)).toBeDefined();
  }
  expect(groupNameProblem("group-1@host")).toBeUndefined();
  for (const bad of ["", "g/1", "g.1", "g:1", "..", "a b"]) {
    expect(groupNameProblem(bad)).toBeDefined();
  }
});

test("messages must fit in one transfer with their header", () => {
  expect(buildConfig({}).system.maxMessageSize).toBe(1024 * 1024 - 20);
  expect(buildConfig({ overrides: { maxTransferSize: "65536" } }).system.maxMessageSize).toBe(
    65516,
  );
  expect(() => buildConfig({ overrides: { maxTransferSize: "65536", maxMessageSize: "65520" } }))
    .toThrow(
      "a record must fit in maxTransferSize",
    );
});
