/**
 * T04 whole-cluster kill and restart: cycles of SIGKILL on every node at once, 2 s down, then
 * starts in random order with 0-3 s between them (3 cycles at CHAOS_SCALE=1, 5 nightly).
 * Must hold: I1-I13; every partition serves again after each cycle (time to service reported;
 * the plan's 10 s target is a threshold, enforced with CHAOS_ENFORCE_THRESHOLDS=1).
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { restartCycles } from "../cluster/nemesis.ts";

chaosTest({
  id: "T04",
  title: "whole-cluster kill and restart",
  runMs: 30_000,
  mixed: true,
  nemesis: (ctx) => restartCycles(ctx, false),
});
