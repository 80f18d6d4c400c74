import { expect, test } from "bun:test";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

// `metaq bench` is checked for working, never for speed.

test("bench produce, consume and latency run against a broker and report in JSON", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({ dataDir: temp.path });
  const common = ["--broker", broker.address, "--topic", "b", "--json", "--duration", "60"];
  const produced = await runMetaq(["bench", "produce", ...common, "--messages", "3000"]);
  expect(produced.code, produced.stderr).toBe(0);
  const produceReport = JSON.parse(produced.stdout);
  expect(produceReport).toMatchObject({ mode: "produce", messages: 3000, failures: 0 });
  expect(produceReport.latency.count).toBe(3000);

  const consumed = await runMetaq(["bench", "consume", ...common, "--messages", "3000"]);
  expect(consumed.code, consumed.stderr).toBe(0);
  expect(JSON.parse(consumed.stdout)).toMatchObject({
    mode: "consume",
    messages: 3000,
    bytes: 300_000,
  });

  const latency = await runMetaq([
    "bench",
    "latency",
    ...common.slice(0, -2),
    "--rate",
    "500",
    "--duration",
    "1",
  ]);
  expect(latency.code, latency.stderr).toBe(0);
  const latencyReport = JSON.parse(latency.stdout);
  expect(latencyReport.sent).toBe(500);
  expect(latencyReport.messages).toBe(500);
  expect(latencyReport.latency.count).toBe(500);
}, 120_000);

test("bench refuses an unknown mode with one line", async () => {
  const result = await runMetaq(["bench", "fly"]);
  expect(result.code).toBe(2);
  expect(result.stderr.trim()).toBe(
    "metaq bench: Cannot bench: give produce, consume or latency (see 'metaq bench --help')",
  );
});
