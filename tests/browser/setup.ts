/**
 * @module Runs before the browser tier (`npm run test:browser`): makes sure the Chromium the
 * tests drive is there, installing Debian's with apt-get when it is missing and this runs as
 * root (as CI does), and otherwise stopping with a message that says how to get it. See
 * chromium.ts for the plan.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import process from "node:process";
import { currentSituation, planChromium } from "./chromium.ts";

const plan = planChromium(currentSituation());
if (plan.kind === "missing") {
  console.error(plan.message);
  process.exit(1);
}
if (plan.kind === "install") {
  console.error(
    `${plan.path} is missing: installing Debian's chromium for the dashboard browser tests`,
  );
  for (const command of plan.commands) {
    console.error(`+ ${command.join(" ")}`);
    const run = spawnSync(command[0], command.slice(1), {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if (run.status !== 0) {
      console.error(
        `Cannot install chromium: '${command.join(" ")}' exited with ${
          run.status ?? run.signal
        }. Install it yourself (apt-get install -y chromium), or set CHROMIUM_PATH.`,
      );
      process.exit(1);
    }
  }
  if (!fs.existsSync(plan.path)) {
    console.error(`Cannot find ${plan.path} after installing chromium; set CHROMIUM_PATH.`);
    process.exit(1);
  }
}
