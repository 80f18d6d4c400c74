/**
 * @module Entry point of the `metaq` executable (bun build --compile) and of `deno run main.ts`:
 * hands the arguments to the command table and exits with its code. No top-level await, so the
 * compiled binary can carry precompiled bytecode (faster start).
 */
import process from "node:process";
import { runCli } from "./cli/mod.ts";

runCli(process.argv.slice(2)).then((code) => process.exit(code));
