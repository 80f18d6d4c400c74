/** MetaQ's ZooKeeper paths and data formats, against the values the original writes and reads. */
import { expect, test } from "bun:test";
import {
  brokerUri,
  formatZkOffset,
  MASTER,
  MetaLayout,
  parseBrokerUri,
  parsePartitionName,
  parseTopicBrokerJson,
  parseTopicBrokerName,
  parseZkOffset,
  topicBrokerJson,
} from "../../../lib/zk/meta_layout.ts";
import { buildZooKeeperConfig, normalizeRoot } from "../../../lib/config/zookeeper_config.ts";

const slave = (slaveId: number) => ({ kind: "slave", slaveId }) as const;

test("broker and topic paths follow MetaZookeeper", () => {
  const layout = new MetaLayout("/meta");
  expect(layout.brokerPath(3, MASTER)).toBe("/meta/brokers/ids/3/master");
  expect(layout.brokerPath(3, slave(2))).toBe("/meta/brokers/ids/3/slave2");
  expect(layout.brokerIdPath(3)).toBe("/meta/brokers/ids/3");
  expect(layout.masterConfigChecksumPath(3)).toBe("/meta/brokers/ids/3/master_config_checksum");
  expect(layout.legacyTopicPath("t", 3, MASTER)).toBe("/meta/brokers/topics/t/3-m");
  expect(layout.topicPath("pub", "t", 3, MASTER)).toBe("/meta/brokers/topics-pub/t/3-m");
  expect(layout.topicPath("sub", "t", 3, slave(1))).toBe("/meta/brokers/topics-sub/t/3-s1");
  expect(layout.groupIdsPath("g")).toBe("/meta/consumers/g/ids");
  expect(layout.groupOwnersPath("g", "t")).toBe("/meta/consumers/g/owners/t");
  expect(layout.groupOffsetsPath("g", "t")).toBe("/meta/consumers/g/offsets/t");
});

test("data formats: meta:// addresses, TopicBroker JSON, offsets", () => {
  expect(brokerUri("10.0.0.5", 8123)).toBe("meta://10.0.0.5:8123");
  expect(brokerUri("fe80::1", 8123)).toBe("meta://[fe80::1]:8123");
  expect(brokerUri("[fe80::1]", 8123)).toBe("meta://[fe80::1]:8123");
  expect(parseBrokerUri("meta://[fe80::1]:8123?slaveId=2")).toEqual({
    host: "fe80::1",
    port: 8123,
  });
  expect(parseBrokerUri("http://x:1")).toBeUndefined();
  // TopicBrokerUnitTest.java: {"numParts":1,"broker":"0-m"}
  expect(topicBrokerJson(1, 0, MASTER)).toBe('{"numParts":1,"broker":"0-m"}');
  expect(topicBrokerJson(4, 2, slave(1))).toBe('{"numParts":4,"broker":"2-s1"}');
  expect(parseTopicBrokerJson('{"broker":"2-m","numParts":4}')).toEqual({
    numParts: 4,
    broker: "2-m",
  });
  expect(parseTopicBrokerJson("4")).toBeUndefined();
  expect(parseTopicBrokerName("12-m")).toEqual({ brokerId: 12, role: MASTER });
  expect(parseTopicBrokerName("12-s3")).toEqual({ brokerId: 12, role: slave(3) });
  expect(parseTopicBrokerName("12-x")).toBeUndefined();
  expect(parsePartitionName("0-10")).toEqual({ brokerId: 0, partition: 10 });
  expect(formatZkOffset(5863734637162233859n, 1024)).toBe("5863734637162233859-1024");
  expect(parseZkOffset("5863734637162233859-1024")).toEqual({
    messageId: 5863734637162233859n,
    offset: 1024,
  });
  expect(parseZkOffset("-1-77")).toEqual({ messageId: -1n, offset: 77 }); // split at the last '-'
  expect(parseZkOffset("300")).toEqual({ messageId: -1n, offset: 300 }); // before MetaQ 1.4
  expect(parseZkOffset("abc")).toBeUndefined();
});

test("[zookeeper] keys read as MetaConfig reads them", () => {
  expect(buildZooKeeperConfig([])).toEqual({
    enable: true,
    connect: "",
    root: "/meta",
    sessionTimeoutMs: 30000,
    connectionTimeoutMs: 30000,
    syncTimeMs: 5000,
  });
  const config = buildZooKeeperConfig([
    ["zk.zkConnect", "h1:2181,h2:2181"],
    ["zk.zkRoot", "metaq/"],
    ["zk.zkSessionTimeoutMs", "10*1000"],
    ["zk.zkSyncTimeMs", "  "], // blank keeps the default
    ["zk.zkEnable", "false"],
  ]);
  expect(config).toEqual({
    enable: false,
    connect: "h1:2181,h2:2181",
    root: "/metaq",
    sessionTimeoutMs: 10000,
    connectionTimeoutMs: 30000,
    syncTimeMs: 5000,
  });
  expect(() => buildZooKeeperConfig([["zk.zkSessionTimeoutMs", "soon"]])).toThrow(
    "Cannot use zk.zkSessionTimeoutMs=soon",
  );
  expect(normalizeRoot("/a/b/")).toBe("/a/b");
});
