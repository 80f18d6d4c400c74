#!/usr/bin/env bash
# `metaq produce` through a pipe against a local broker (fsync before every ack, the default
# group commit): lines/s of the CLI, median of RUNS runs. The broker is started here and killed
# on exit. Usage: bench/cli_produce.sh [METAQ_BINARY] [MESSAGES] [SIZE] [RUNS]
#   SIZE 0: the lines of `seq MESSAGES` as they are; else each line padded to SIZE bytes.
set -euo pipefail
BIN=${1:-dist/metaq}
MESSAGES=${2:-1000000}
SIZE=${3:-100}
RUNS=${4:-3}
WORK=$(mktemp -d)
PORT_FILE="$WORK/ports.json"
"$BIN" serve --port 0 --no-http --data "$WORK/data" --ports-file "$PORT_FILE" --log-level warn &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; wait $BROKER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
PORT=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$PORT_FILE")
INPUT="$WORK/input"
if [ "$SIZE" = 0 ]; then seq "$MESSAGES" >"$INPUT"; else
  seq "$MESSAGES" | awk -v size="$SIZE" '{ printf "%0" (size) "d\n", $1 }' >"$INPUT"; fi
rates=()
for run in $(seq "$RUNS"); do
  json=$(cat "$INPUT" | "$BIN" produce "bench-$run" --partition 0 --broker "127.0.0.1:$PORT" --format json)
  rate=$(echo "$json" | bun -e 'const s = JSON.parse(await Bun.stdin.text()); if (s.acknowledged !== s.lines) throw new Error("not every line acknowledged"); console.log(Math.round(s.acknowledged / s.seconds))')
  echo "run $run: $rate msg/s" >&2
  rates+=("$rate")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
echo "{\"binary\":\"$BIN\",\"messages\":$MESSAGES,\"size\":$SIZE,\"runs\":[$(IFS=,; echo "${rates[*]}")],\"median\":$median,\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
