/**
 * @module Summarises a `.cpuprofile` (from `bun --cpu-prof`, Deno or Node): the functions with
 * the most self time and the most inclusive time, as shares of all samples, and optionally the
 * callers of one function. What bench/README.md's "Where the time goes" was read from.
 *
 *   bun bench/profile_top.ts PROFILE.cpuprofile [--top N] [--callers NAME]
 */
import * as fs from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly children?: number[];
}

interface Profile {
  readonly nodes: ProfileNode[];
  readonly samples: number[];
}

function main(): number {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { top: { type: "string" }, callers: { type: "string" } },
  });
  if (positionals.length !== 1) {
    console.error("usage: bun bench/profile_top.ts PROFILE.cpuprofile [--top N] [--callers NAME]");
    return 2;
  }
  const profile = JSON.parse(fs.readFileSync(positionals[0], "utf8")) as Profile;
  const top = Number(values.top ?? 25);
  const summary = summarise(profile, values.callers);
  console.log(`${profile.samples.length} samples`);
  console.log("--- self");
  for (const [name, count] of ranked(summary.self, top)) console.log(line(count, profile, name));
  console.log("--- inclusive");
  for (const [name, count] of ranked(summary.inclusive, top)) {
    console.log(line(count, profile, name));
  }
  if (values.callers) {
    console.log(`--- callers of ${values.callers} (its self time)`);
    for (const [name, count] of ranked(summary.callers, top)) {
      console.log(line(count, profile, name));
    }
  }
  return 0;
}

function summarise(profile: Profile, callersOf?: string) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const hits = new Map<number, number>();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const callers = new Map<string, number>();
  for (const [id, count] of hits) {
    const name = nameOf(byId.get(id)!);
    add(self, name, count);
    if (callersOf && name.startsWith(callersOf)) {
      const caller = parent.get(id);
      add(callers, caller === undefined ? "-" : nameOf(byId.get(caller)!), count);
    }
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = nameOf(byId.get(at)!);
      if (!seen.has(frame)) add(inclusive, frame, count);
      seen.add(frame);
    }
  }
  return { self, inclusive, callers };
}

function nameOf(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  return `${functionName || "(anon)"} ${url.split("/").pop()}:${lineNumber + 1}`;
}

function add(map: Map<string, number>, key: string, count: number): void {
  map.set(key, (map.get(key) ?? 0) + count);
}

function ranked(map: Map<string, number>, top: number): [string, number][] {
  return [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
}

function line(count: number, profile: Profile, name: string): string {
  return `${((100 * count) / profile.samples.length).toFixed(1).padStart(5)} %  ${name}`;
}

if (import.meta.main) process.exit(main());
