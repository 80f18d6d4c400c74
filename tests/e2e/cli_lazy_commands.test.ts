/**
 * @module The compiled CLI loads each command's modules only when that command runs (cli/mod.ts,
 * split chunks in the build). Every command in the table must still load from the binary, print
 * its own usage (`metaq help X` and `metaq X --help` alike), and refuse a bad flag in one line.
 */
import { expect, test } from "bun:test";
import { COMMANDS } from "../../cli/mod.ts";
import { runMetaq } from "../support/harness.ts";

test("every command loads lazily from the binary: its help, and a bad flag's one-line error", async () => {
  const help = await runMetaq(["--help"]);
  expect(help.code).toBe(0);
  for (const { name, summary } of COMMANDS) {
    expect(help.stdout).toContain(`  ${name} `);
    expect(help.stdout).toContain(summary);
    const viaHelp = await runMetaq(["help", name]);
    const viaFlag = await runMetaq([name, "--help"]);
    expect([viaHelp.code, viaFlag.code]).toEqual([0, 0]);
    expect(viaHelp.stdout).toContain(`Usage: metaq ${name}`);
    expect(viaFlag.stdout).toBe(viaHelp.stdout);
    const bad = await runMetaq([name, "--no-such-flag"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toContain(`unknown flag --no-such-flag`);
    expect(bad.stderr.trim().split("\n").length).toBe(1);
  }
});

test("each command's module names itself as the table does", async () => {
  for (const entry of COMMANDS) expect((await entry.load()).name).toBe(entry.name);
});
