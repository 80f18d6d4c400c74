/**
 * The browser tier gets its Chromium by itself: `npm ci && npm test` on a machine with only
 * Node and npm (as root, as CI runs) must not stop at "chromium is missing". Regression: only
 * .ci/run installed it. The apt-get here is a stand-in script on PATH that records its calls,
 * so the test never installs anything for real.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { REPO_ROOT } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { planChromium } from "./chromium.ts";

const SETUP = path.join(REPO_ROOT, "tests/browser/setup.ts");

test("the plan uses Chromium when present, installs it as root with apt-get, else says how", () => {
  const base = { path: "/usr/bin/chromium", explicit: false, exists: false, root: true };
  expect(planChromium({ ...base, exists: true })).toEqual({
    kind: "present",
    path: "/usr/bin/chromium",
  });
  expect(planChromium({ ...base, aptGet: "/usr/bin/apt-get" })).toEqual({
    kind: "install",
    path: "/usr/bin/chromium",
    commands: [["/usr/bin/apt-get", "update"], [
      "/usr/bin/apt-get",
      "install",
      "-y",
      "chromium",
    ]],
  });
  const user = planChromium({ ...base, root: false, aptGet: "/usr/bin/apt-get" });
  expect(user.kind === "missing" && user.message).toBe(
    "Cannot run the browser tests: /usr/bin/chromium is missing, and it cannot be installed " +
      "here (not running as root). Install Debian's chromium (as root: apt-get install -y " +
      "chromium), or set CHROMIUM_PATH to a Chromium or Chrome binary.",
  );
  const noApt = planChromium(base);
  expect(noApt.kind === "missing" && noApt.message).toContain("(apt-get is not on PATH)");
  const explicit = planChromium({ ...base, path: "/opt/chrome", explicit: true, root: true });
  expect(explicit.kind === "missing" && explicit.message).toStartWith(
    "Cannot run the browser tests: CHROMIUM_PATH=/opt/chrome does not exist.",
  );
});

/** Runs setup.ts with `env` over the environment (CHROMIUM_PATH removed unless given). */
function runSetup(env: Record<string, string>) {
  const base = { ...process.env };
  delete base.CHROMIUM_PATH;
  const run = spawnSync(process.execPath, [SETUP], {
    env: { ...base, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: run.status, stderr: run.stderr };
}

test("setup installs a missing Chromium with apt-get when it runs as root, else stops and says how", async () => {
  await using temp = tempDir();
  const bin = path.join(temp.path, "bin");
  fs.mkdirSync(bin);
  const calls = path.join(temp.path, "calls");
  const target = path.join(temp.path, "chromium");
  // The stand-in apt-get: records each call; `install -y chromium` puts a binary in place.
  fs.writeFileSync(
    path.join(bin, "apt-get"),
    `#!/bin/sh\necho "$@" >> '${calls}'\n` +
      `if [ "$1" = install ]; then printf '#!/bin/sh\\n' > '${target}'; chmod +x '${target}'; fi\n`,
    { mode: 0o755 },
  );
  const run = runSetup({
    PATH: `${bin}${path.delimiter}${process.env.PATH}`,
    METAQ_TEST_CHROMIUM_DEFAULT: target,
  });
  if (process.getuid?.() === 0) {
    expect([run.code, run.stderr.split("\n")[0]]).toEqual([
      0,
      `${target} is missing: installing Debian's chromium for the dashboard browser tests`,
    ]);
    expect(fs.readFileSync(calls, "utf8")).toBe("update\ninstall -y chromium\n");
    expect(fs.existsSync(target)).toBe(true);
    // Now present: nothing more is installed.
    expect(runSetup({ METAQ_TEST_CHROMIUM_DEFAULT: target }).code).toBe(0);
    expect(fs.readFileSync(calls, "utf8")).toBe("update\ninstall -y chromium\n");
  } else {
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("cannot be installed here (not running as root)");
    expect(fs.existsSync(calls)).toBe(false);
  }
});

test("setup stops with one clear line when CHROMIUM_PATH names a binary that is not there", async () => {
  await using temp = tempDir();
  const missing = path.join(temp.path, "no-chrome");
  const run = runSetup({ CHROMIUM_PATH: missing });
  expect([run.code, run.stderr.trim().split("\n")]).toEqual([1, [
    `Cannot run the browser tests: CHROMIUM_PATH=${missing} does not exist. Install Debian's ` +
    "chromium (as root: apt-get install -y chromium), or set CHROMIUM_PATH to a Chromium or " +
    "Chrome binary.",
  ]]);
});
