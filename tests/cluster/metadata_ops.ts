/**
 * @module Operator commands a metadata scenario runs against the cluster (T19): the `metaq`
 * CLI as a child process with a bounded run time, and what the nodes say about topics and
 * members. Every call is bounded; a failure is returned, never thrown, so the nemesis logs it.
 */
import { spawn } from "node:child_process";
import { MetaqClient } from "../../lib/client/client.ts";
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { type Cluster, METAQ_BINARY } from "./launcher.ts";

export interface CliOutcome {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `metaq <args>` (killed after `timeoutMs`). */
export function runMetaqCli(
  cluster: Cluster,
  args: readonly string[],
  timeoutMs: number,
): Promise<CliOutcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cluster.options.binary ?? METAQ_BINARY, [...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: error.message, ms: Date.now() - started });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** `metaq cluster status --format json` of node `id`, or undefined when it does not answer. */
export async function statusReport(
  cluster: Cluster,
  id: number,
): Promise<ClusterStatusReport | undefined> {
  const outcome = await runMetaqCli(
    cluster,
    ["cluster", "status", "--broker", cluster.address(id), "--format", "json"],
    10_000,
  );
  if (outcome.code !== 0) return undefined;
  try {
    return JSON.parse(outcome.stdout) as ClusterStatusReport;
  } catch {
    return undefined;
  }
}

/** What node `id` answers to `meta <topic>`: its partition count and leaders, or why not. */
export async function topicSeenBy(
  cluster: Cluster,
  id: number,
  topic: string,
): Promise<{ partitions: number; leaders: number } | { error: string }> {
  const client = new MetaqClient({
    brokers: [cluster.address(id)],
    requestTimeoutMs: 3_000,
    connectTimeoutMs: 3_000,
    reconnectAttemptsMax: 1,
  });
  try {
    const meta = await client.topicMetadata(topic) as {
      partitions: number;
      leaders?: Record<string, string>;
    };
    return { partitions: meta.partitions, leaders: Object.keys(meta.leaders ?? {}).length };
  } catch (error) {
    return { error: (error as Error).message };
  } finally {
    client.close();
  }
}
