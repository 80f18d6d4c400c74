/**
 * @module The "nevers" of the architecture (shared/design/architecture.md), checked on the source
 * text: which layer may import which, no wall clock, randomness or timers in the pure cores, and
 * no module patching a hook field of another module's object. It reads the import statements
 * (static, re-exports and literal dynamic imports) after removing comments; it is not a type
 * checker, so a type-only import counts like any other: it still ties one layer to another's
 * vocabulary.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Files that must take a Clock, a Random and Timers instead of reading time, drawing randomness
 * or starting timers, so the simulator can run them. A trailing "/" means every file under it.
 * The cluster's driver (replica, node, replicated log) and routing (edge, forwarder) are here:
 * the simulator runs them in virtual time.
 */
const PURE_CORES: readonly string[] = [
  "lib/protocol/",
  "lib/cluster/raft.ts",
  "lib/cluster/raft_log.ts",
  "lib/cluster/unstable_log.ts",
  "lib/cluster/quorum.ts",
  "lib/cluster/messages.ts",
  "lib/cluster/replica.ts",
  "lib/cluster/cluster_node.ts",
  "lib/cluster/replicated_log.ts",
  "lib/server/edge.ts",
  "lib/server/forwarder.ts",
  "lib/broker/groups/coordinator.ts",
  "lib/broker/groups/balance.ts",
  "lib/store/recovery.ts",
  "lib/store/segment.ts",
  "lib/broker/tx/state.ts",
  "lib/zk/jute.ts",
  "lib/zk/protocol.ts",
  "lib/zk/meta_layout.ts",
  "lib/client/zk_balance.ts",
];

/** Calls a pure core must not make, each with the text shown in a report. */
const IMPURE_CALLS: readonly { readonly text: string; readonly pattern: RegExp }[] = [
  { text: "Date.now(", pattern: /(?<![\w$])Date\s*\.\s*now\s*\(/g },
  { text: "Math.random(", pattern: /(?<![\w$])Math\s*\.\s*random\s*\(/g },
  { text: "setTimeout(", pattern: /(?<![\w$])setTimeout\s*\(/g },
  { text: "setInterval(", pattern: /(?<![\w$])setInterval\s*\(/g },
  { text: "randomUUID(", pattern: /(?<![\w$])randomUUID\s*\(/g },
  { text: "process.pid", pattern: /(?<![\w$])process\s*\.\s*pid(?![\w$])/g },
];

/** The top-level files of lib/ that form the floor; any other top-level file is its own layer. */
const FLOOR: ReadonlySet<string> = new Set([
  "lib/assert.ts",
  "lib/errors.ts",
  "lib/limits.ts",
  "lib/clock.ts",
  "lib/timers.ts",
  "lib/log.ts",
  "lib/log_ring.ts",
  "lib/bytes.ts",
  "lib/crc32.ts",
  "lib/prng.ts",
]);

/**
 * What each layer may import inside lib/: a `deny` list names forbidden layers, an `allow` list
 * names the only permitted ones. Layers without an entry are bound only by the rules for every
 * file (no cli/, no tests/, no lib/app outside lib/app).
 */
const LAYER_RULES: Readonly<
  Record<string, { readonly deny?: readonly string[]; readonly allow?: readonly string[] }>
> = {
  broker: { deny: ["server", "http", "cli", "app", "cluster"] },
  cluster: { deny: ["http", "server", "broker", "app"] },
  // A client talks over the wire only: the deny list (store, broker, cluster, server, http, app,
  // config, security) is written as the allow list it amounts to, so a new layer is denied too.
  client: { allow: ["client", "protocol", "floor", "runtime", "zk"] },
  store: { deny: ["broker", "cluster", "server", "http", "client", "app"] },
  // The uplink reads the edge's Logs and writes to its hub as a client: never the edges of this
  // broker, nor replication (it runs on a broker that runs alone).
  uplink: { deny: ["server", "http", "cli", "app", "cluster"] },
  protocol: { allow: ["protocol", "floor"] },
  // The ZooKeeper client and MetaQ's layout in it: used by the broker's registrar and by clients.
  zk: { allow: ["zk", "floor"] },
  floor: { allow: ["floor"] },
};

/**
 * The store's only imports from protocol. The record layout is both the disk format and the wire
 * format (`get` serves records as they are stored), so its codec and the message id are the one
 * allowed exception to "the store knows bytes and offsets".
 */
const STORE_PROTOCOL_EXCEPTIONS: readonly string[] = [
  "lib/protocol/record.ts",
  "lib/protocol/message_id.ts",
];

/** Fields the old plugins patched onto other modules' objects after construction. */
const HOOK_NAMES: readonly string[] = [
  "appendHook",
  "readLimit",
  "metadataDecorator",
  "filterFor",
  "transactions",
  "intercept",
  "retentionGuard",
  "onForward",
  "onForwardReply",
  "askDigest",
  "describeOffsets",
  "connectionCount",
];

/** The module-global map the old plugins wrote their stats lines into. */
const PATCHED_GLOBALS: readonly string[] = ["extraStatsItems"];

/**
 * Returns one line per broken layering or purity rule, as `file:line -> import (reason)`, sorted.
 * Keys are repository paths ("lib/store/segment.ts"); only files under lib/ are checked.
 */
function violations(files: ReadonlyMap<string, string>): string[] {
  const found: string[] = [];
  for (const [path, source] of files) {
    if (!path.startsWith("lib/")) continue;
    const code = stripComments(source);
    for (const { index, specifier } of importsOf(code)) {
      if (!specifier.startsWith(".")) continue; // node:, bun:, hono: outside the layering
      const target = posix.normalize(posix.join(posix.dirname(path), specifier));
      const reason = importViolation(path, target);
      if (reason) found.push(`${path}:${lineAt(code, index)} -> ${target} (${reason})`);
    }
    if (!isPureCore(path)) continue;
    for (const { text, pattern } of IMPURE_CALLS) {
      for (const match of code.matchAll(pattern)) {
        const reason = "a pure core takes a Clock and a Random";
        found.push(`${path}:${lineAt(code, match.index)} -> ${text} (${reason})`);
      }
    }
  }
  return found.sort(byPathThenLine);
}

/**
 * Returns one line per assignment to a patching hook of another object (`broker.appendHook =`,
 * `node.running.broker.readLimit =`, `x["intercept"] =`) and per use of a patched module global.
 * `this.hook =` is a module setting its own field and is allowed. Checks every file given.
 */
function hookViolations(files: ReadonlyMap<string, string>): string[] {
  const hooks = HOOK_NAMES.join("|");
  const assignment = new RegExp(
    String.raw`(?:\.\s*(${hooks})|\[\s*["'](${hooks})["']\s*\])\s*(?:\?\?|\|\||&&)?=(?!=)`,
    "g",
  );
  const globals = new RegExp(String.raw`(?<![\w$])(${PATCHED_GLOBALS.join("|")})(?![\w$])`, "g");
  const found: string[] = [];
  for (const [path, source] of files) {
    const code = stripComments(source);
    for (const match of code.matchAll(assignment)) {
      if (/(?<![\w$.#])this\s*$/.test(code.slice(0, match.index))) continue;
      const line = lineAt(code, match.index);
      found.push(`${path}:${line} -> ${lineText(code, line)} (assigns another object's hook)`);
    }
    for (const match of code.matchAll(globals)) {
      const line = lineAt(code, match.index);
      found.push(`${path}:${line} -> ${match[1]} (a patched module global)`);
    }
  }
  return found.sort(byPathThenLine);
}

test("lib/ keeps the layering and purity nevers", () => {
  const found = violations(readTree(["lib"]));
  expect(found.length, report("layering violations", found)).toBe(0);
});

test("no module assigns a hook field of another module's object", () => {
  const found = hookViolations(readTree(["lib", "cli"]));
  expect(found.length, report("hook patches", found)).toBe(0);
});

test("the layering checker reports planted violations and nothing else", () => {
  const files = new Map([
    [
      "lib/store/segment.ts",
      [
        'import { encodeRecord } from "../protocol/record.ts";',
        'import type { MessageId } from "../protocol/message_id.ts";',
        'import { Parser } from "../protocol/parser.ts";',
        "import {",
        "  Broker,",
        '} from "../broker/broker.ts";',
        "const now = Date.now(); // Date.now() in a comment is fine",
        '/* Math.random() */ const url = "http://example"; const re = /\\/\\//;',
      ].join("\n"),
    ],
    [
      "lib/protocol/parser.ts",
      [
        'export { ERRORS } from "../errors.ts";',
        'export * from "../config/config.ts";',
        "const slash = 10 / 2; const tick = setTimeout(() => {}, slash);",
      ].join("\n"),
    ],
    [
      "lib/client/client.ts",
      [
        'import "../runtime/mod.ts";',
        'const store = await import("../store/partition_log.ts");',
        'import { assemble } from "../app/assemble.ts";',
      ].join("\n"),
    ],
    ["lib/assert.ts", 'import { x } from "./protocol/commands.ts";'],
    [
      "lib/broker/groups/coordinator.ts",
      [
        'import { serve } from "../../../cli/serve.ts";',
        'import { seeded } from "../../../tests/support/prng.ts";',
        'import { Raft } from "../../cluster/raft.ts";',
        "const template = `${Math.random()} /* not a comment */`;",
      ].join("\n"),
    ],
    ["lib/app/assemble.ts", 'import { Broker } from "../broker/broker.ts";\nDate.now();'],
    ["cli/serve.ts", 'import { assemble } from "../lib/app/assemble.ts";'],
  ]);
  expect(violations(files)).toEqual([
    "lib/assert.ts:1 -> lib/protocol/commands.ts (floor may import only floor)",
    "lib/broker/groups/coordinator.ts:1 -> cli/serve.ts (nothing in lib/ imports cli/)",
    "lib/broker/groups/coordinator.ts:2 -> tests/support/prng.ts (nothing in lib/ imports tests/)",
    "lib/broker/groups/coordinator.ts:3 -> lib/cluster/raft.ts (broker must not import cluster)",
    "lib/broker/groups/coordinator.ts:4 -> Math.random( (a pure core takes a Clock and a Random)",
    "lib/client/client.ts:2 -> lib/store/partition_log.ts " +
    "(client may import only client, protocol, floor, runtime, zk)",
    "lib/client/client.ts:3 -> lib/app/assemble.ts (only lib/app and cli/ may import lib/app)",
    "lib/protocol/parser.ts:2 -> lib/config/config.ts (protocol may import only protocol, floor)",
    "lib/protocol/parser.ts:3 -> setTimeout( (a pure core takes a Clock and a Random)",
    "lib/store/segment.ts:3 -> lib/protocol/parser.ts " +
    "(store may import from protocol only lib/protocol/record.ts, lib/protocol/message_id.ts)",
    "lib/store/segment.ts:4 -> lib/broker/broker.ts (store must not import broker)",
    "lib/store/segment.ts:7 -> Date.now( (a pure core takes a Clock and a Random)",
  ]);
});

test("the hook checker reports planted patches and nothing else", () => {
  const files = new Map([
    [
      "lib/cluster/plugin.ts",
      [
        "running.broker.appendHook = (put, done) => append(put, done);",
        "router.intercept=(command) => forward(command);",
        'broker["readLimit"] = limit;',
        "maintenance.retentionGuard ??= guard;",
        'extraStatsItems.set("cluster", lines);',
      ].join("\n"),
    ],
    [
      "lib/broker/broker.ts",
      [
        "this.appendHook = undefined;",
        "if (broker.filterFor === filter) return;",
        "// broker.transactions = transactions;",
        "const parts = { onForward: forward, connectionCount: 0 };",
        "const n = server.connectionCount;",
      ].join("\n"),
    ],
  ]);
  expect(hookViolations(files)).toEqual([
    "lib/cluster/plugin.ts:1 -> running.broker.appendHook = (put, done) => append(put, done); " +
    "(assigns another object's hook)",
    "lib/cluster/plugin.ts:2 -> router.intercept=(command) => forward(command); " +
    "(assigns another object's hook)",
    'lib/cluster/plugin.ts:3 -> broker["readLimit"] = limit; (assigns another object\'s hook)',
    "lib/cluster/plugin.ts:4 -> maintenance.retentionGuard ??= guard; " +
    "(assigns another object's hook)",
    "lib/cluster/plugin.ts:5 -> extraStatsItems (a patched module global)",
  ]);
});

/** The first reason the import `target` breaks a rule for the lib/ file `path`, if any. */
function importViolation(path: string, target: string): string | undefined {
  const from = layerOf(path);
  const to = layerOf(target);
  if (to === "cli" || to === "tests") return `nothing in lib/ imports ${to}/`;
  if (!target.startsWith("lib/")) return undefined;
  if (to === "app" && from !== "app") return "only lib/app and cli/ may import lib/app";
  const rule = LAYER_RULES[from];
  if (rule?.deny?.includes(to)) return `${from} must not import ${to}`;
  if (rule?.allow && !rule.allow.includes(to)) {
    return `${from} may import only ${rule.allow.join(", ")}`;
  }
  if (from === "store" && to === "protocol" && !STORE_PROTOCOL_EXCEPTIONS.includes(target)) {
    return `store may import from protocol only ${STORE_PROTOCOL_EXCEPTIONS.join(", ")}`;
  }
  return undefined;
}

/** lib/broker/groups/x.ts is "broker", lib/assert.ts is "floor", cli/serve.ts is "cli". */
function layerOf(path: string): string {
  const parts = path.split("/");
  if (parts[0] !== "lib") return parts[0];
  if (parts.length > 2) return parts[1];
  return FLOOR.has(path) ? "floor" : path;
}

function isPureCore(path: string): boolean {
  return PURE_CORES.some((core) => core.endsWith("/") ? path.startsWith(core) : path === core);
}

const NOT_A_MEMBER = String.raw`(?<![\w$.])`;
const SPECIFIER = String.raw`\s*(["'])([^"'\n]+)\1`;
const IMPORT_BINDINGS = String.raw`(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*\s*as\s+[\w$]+)?`;
const EXPORT_BINDINGS = String.raw`(?:type\s+)?(?:\{[^}]*\}|\*(?:\s*as\s+[\w$]+)?)`;
const IMPORT_PATTERNS: readonly RegExp[] = [
  // import x from, import type { a } from, import x, { a } from, import * as x from
  new RegExp(String.raw`${NOT_A_MEMBER}import\s+${IMPORT_BINDINGS}\s*from${SPECIFIER}`, "g"),
  // export { a } from, export type { a } from, export * from, export * as x from
  new RegExp(String.raw`${NOT_A_MEMBER}export\s+${EXPORT_BINDINGS}\s*from${SPECIFIER}`, "g"),
  // import "./side_effect.ts"
  new RegExp(String.raw`${NOT_A_MEMBER}import${SPECIFIER}`, "g"),
  // import("./lazy.ts"), with a literal specifier only
  new RegExp(String.raw`${NOT_A_MEMBER}import\s*\(\s*(["'\`])([^"'\`\n$]+)\1`, "g"),
];

/** The specifiers imported by comment-free `code`, each with the index of its statement. */
function importsOf(code: string): { index: number; specifier: string }[] {
  const imports: { index: number; specifier: string }[] = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const match of code.matchAll(pattern)) {
      imports.push({ index: match.index, specifier: match[2] });
    }
  }
  return imports.sort((a, b) => a.index - b.index);
}

/** Words after which a "/" starts a regular expression rather than a division. */
const REGEX_AFTER_WORDS: ReadonlySet<string> = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

/**
 * Replaces every comment with spaces, keeping newlines (so line numbers hold) and the text of
 * strings, template literals and regular expressions (so "http://" is not a comment).
 */
function stripComments(source: string): string {
  let out = "";
  let i = 0;
  let depth = 0; // open braces of code, to find the "}" that resumes a template literal
  const templateDepths: number[] = [];
  let previous = ""; // the last token, to tell a regular expression from a division
  while (i < source.length) {
    const c = source[i];
    let end = i + 1;
    if (c === "/" && source[i + 1] === "/") {
      end = source.indexOf("\n", i);
      if (end < 0) end = source.length;
      out += " ".repeat(end - i);
      i = end;
      continue;
    }
    if (c === "/" && source[i + 1] === "*") {
      const close = source.indexOf("*/", i + 2);
      end = close < 0 ? source.length : close + 2;
      out += source.slice(i, end).replace(/[^\n]/g, " ");
      i = end;
      continue;
    }
    if (c === '"' || c === "'") {
      end = skipQuoted(source, i + 1, c);
      previous = "string";
    } else if (c === "`" || (c === "}" && templateDepths.at(-1) === depth)) {
      if (c === "}") templateDepths.pop();
      end = skipTemplate(source, i + 1);
      if (source.slice(end - 2, end) === "${") templateDepths.push(depth);
      previous = "string";
    } else if (c === "/" && (previous === "" || /^[(,=:[!&|?{};+\-*%<>~^]$/.test(previous))) {
      end = skipRegex(source, i + 1);
      previous = "string";
    } else if (c === "/" && REGEX_AFTER_WORDS.has(previous)) {
      end = skipRegex(source, i + 1);
      previous = "string";
    } else if (/[\w$]/.test(c)) {
      const word = /[\w$]+/y;
      word.lastIndex = i;
      word.exec(source);
      end = word.lastIndex;
      previous = source.slice(i, end);
    } else if (!/\s/.test(c)) {
      if (c === "{") depth++;
      if (c === "}") depth--;
      previous = c;
    }
    out += source.slice(i, end);
    i = end;
  }
  return out;
}

/** The index just past the closing `quote` of a string whose body starts at `start`. */
function skipQuoted(source: string, start: number, quote: string): number {
  let i = start;
  while (i < source.length && source[i] !== quote && source[i] !== "\n") {
    i += source[i] === "\\" ? 2 : 1;
  }
  return Math.min(i + 1, source.length);
}

/** The index just past the closing "`" or the next "${" of a template body starting at `start`. */
function skipTemplate(source: string, start: number): number {
  let i = start;
  while (i < source.length) {
    if (source[i] === "\\") i += 2;
    else if (source[i] === "`") return i + 1;
    else if (source[i] === "$" && source[i + 1] === "{") return i + 2;
    else i++;
  }
  return source.length;
}

/** The index just past the flags of a regular expression whose body starts at `start`. */
function skipRegex(source: string, start: number): number {
  let i = start;
  let inClass = false;
  while (i < source.length && source[i] !== "\n") {
    const c = source[i];
    if (c === "\\") i++;
    else if (c === "[") inClass = true;
    else if (c === "]") inClass = false;
    else if (c === "/" && !inClass) break;
    i++;
  }
  i++;
  while (i < source.length && /[a-z]/.test(source[i])) i++;
  return Math.min(i, source.length);
}

function lineAt(code: string, index: number): number {
  let line = 1;
  for (let i = code.indexOf("\n"); i >= 0 && i < index; i = code.indexOf("\n", i + 1)) line++;
  return line;
}

function lineText(code: string, line: number): string {
  return code.split("\n")[line - 1].trim();
}

function byPathThenLine(a: string, b: string): number {
  const [pathA, lineA] = a.split(" ")[0].split(":");
  const [pathB, lineB] = b.split(" ")[0].split(":");
  if (pathA !== pathB) return pathA < pathB ? -1 : 1;
  return Number(lineA) - Number(lineB) || (a < b ? -1 : a > b ? 1 : 0);
}

function report(what: string, found: readonly string[]): string {
  return `${found.length} ${what}:\n  ${found.join("\n  ")}`;
}

/** Every .ts file under the given top-level directories, keyed by repository path. */
function readTree(roots: readonly string[]): Map<string, string> {
  const repository = fileURLToPath(new URL("../../../", import.meta.url));
  const files = new Map<string, string>();
  const pending = [...roots];
  while (pending.length > 0) {
    const directory = pending.pop()!;
    for (const entry of readdirSync(join(repository, directory), { withFileTypes: true })) {
      const path = `${directory}/${entry.name}`;
      if (entry.isDirectory()) pending.push(path);
      else if (entry.name.endsWith(".ts")) {
        files.set(path, readFileSync(join(repository, path), "utf8"));
      }
    }
  }
  expect(files.size).toBeGreaterThan(0);
  return files;
}
