/**
 * @module The Chromium the browser tests drive, and how the browser tier gets it when it is
 * missing (setup.ts runs this before the tier, so `npm ci && npm test` is the whole set-up):
 *
 * | situation                                              | plan                               |
 * | ------------------------------------------------------ | ---------------------------------- |
 * | the binary is there                                    | use it                             |
 * | $CHROMIUM_PATH names a missing file                    | stop: that path is the user's word |
 * | Debian's is missing, running as root, apt-get on PATH  | apt-get update; install chromium   |
 * | Debian's is missing otherwise                          | stop, saying how to get it         |
 */
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";

/** Where Debian's `chromium` package puts it (a test may point elsewhere, see chromiumPath). */
const DEBIAN_CHROMIUM = "/usr/bin/chromium";

/** $CHROMIUM_PATH, else Debian's (METAQ_TEST_CHROMIUM_DEFAULT stands in for it in tests). */
export function chromiumPath(env: Record<string, string | undefined> = process.env): string {
  return env.CHROMIUM_PATH ?? env.METAQ_TEST_CHROMIUM_DEFAULT ?? DEBIAN_CHROMIUM;
}

export type ChromiumPlan =
  | { readonly kind: "present"; readonly path: string }
  | { readonly kind: "install"; readonly path: string; readonly commands: readonly string[][] }
  | { readonly kind: "missing"; readonly path: string; readonly message: string };

export interface ChromiumSituation {
  readonly path: string;
  /** The path came from $CHROMIUM_PATH. */
  readonly explicit: boolean;
  readonly exists: boolean;
  readonly root: boolean;
  /** apt-get's path, when it is on PATH. */
  readonly aptGet?: string;
}

/** What to do about Chromium (the table above); pure. */
export function planChromium(situation: ChromiumSituation): ChromiumPlan {
  const { path: where } = situation;
  if (situation.exists) return { kind: "present", path: where };
  const how = `Install Debian's chromium (as root: apt-get install -y chromium), or set ` +
    "CHROMIUM_PATH to a Chromium or Chrome binary.";
  if (situation.explicit) {
    return {
      kind: "missing",
      path: where,
      message: `Cannot run the browser tests: CHROMIUM_PATH=${where} does not exist. ${how}`,
    };
  }
  if (situation.root && situation.aptGet) {
    return {
      kind: "install",
      path: where,
      commands: [[situation.aptGet, "update"], [situation.aptGet, "install", "-y", "chromium"]],
    };
  }
  const why = situation.root ? "apt-get is not on PATH" : "not running as root";
  return {
    kind: "missing",
    path: where,
    message: `Cannot run the browser tests: ${where} is missing, and it cannot be installed ` +
      `here (${why}). ${how}`,
  };
}

/** This machine's situation. */
export function currentSituation(env: Record<string, string | undefined> = process.env) {
  const where = chromiumPath(env);
  return {
    path: where,
    explicit: env.CHROMIUM_PATH !== undefined,
    exists: fs.existsSync(where),
    root: process.getuid?.() === 0,
    aptGet: onPath("apt-get", env.PATH ?? ""),
  };
}

/** The browser tests' precondition: a one-line error naming the path when it is not met. */
export function requireChromium(): string {
  const where = chromiumPath();
  if (!fs.existsSync(where)) {
    throw new Error(
      `Cannot run the dashboard browser test: ${where} is missing (npm run test:browser ` +
        "installs it when it can, or set CHROMIUM_PATH)",
    );
  }
  return where;
}

function onPath(command: string, searchPath: string): string | undefined {
  for (const dir of searchPath.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
