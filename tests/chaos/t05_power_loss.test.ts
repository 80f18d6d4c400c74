/**
 * T05 whole-cluster power loss (plan 1.3): cycles of a power cut on every node at once (SIGKILL,
 * unsynced bytes lost, torn tails, unsynced directory operations undone, new boot id), then
 * restart in random order. Variant a (fsync=always, CI and nightly): I1-I13, zero acked loss.
 * Variant b (fsync=interval:200, nightly, report-only for loss): I2, I3, I7, I10, I11, I13 must
 * hold; acknowledged loss is reported. After each cut the partitions wait in repair mode, and the
 * nemesis runs `metaq cluster force-recover --all --yes` as an operator would.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { restartCycles } from "../cluster/nemesis.ts";

chaosTest({
  id: "T05",
  title: "whole-cluster power loss, fsync=always",
  runMs: 30_000,
  mixed: true,
  cluster: { fsync: "always" },
  nemesis: (ctx) => restartCycles(ctx, true),
});

chaosTest({
  id: "T05b",
  title: "whole-cluster power loss, fsync=interval:200 (report-only loss)",
  tier: "nightly",
  runMs: 60_000,
  mixed: true,
  cluster: { fsync: "interval:200" },
  check: { enforce: ["I2", "I3", "I7", "I10", "I11", "I13"] },
  nemesis: (ctx) => restartCycles(ctx, true),
});
