import { test } from "bun:test";
import { startCluster } from "../support/cluster_in_process.ts";
import { tempDir } from "../support/temp_dir.ts";
import { consoleLogger } from "../../lib/log.ts";
import { clusterStatus } from "../../lib/cluster/status.ts";

test("dbg", async () => {
  await using temp = tempDir();
  await using cluster = await startCluster({ dataPath: temp.path, configText: "[system]\nnumPartitions=2\n[topic=t]\n", logger: consoleLogger("info") });
  await Promise.all(cluster.nodes.map((n) => n.cluster!.prepare("t", 0)));
  await new Promise((r) => setTimeout(r, 3000));
  for (const n of cluster.nodes) console.log(JSON.stringify(clusterStatus(n.cluster!)));
}, 60000);
