#!/usr/bin/env bash
# The throughput cost of TLS and authentication, in one run: the same `metaq bench produce` and
# `metaq bench consume` against a fresh broker in each mode (plain, auth, TLS, TLS + auth), the
# modes taking turns for --repeat rounds. Prints one line per run and a median table.
#
#   bash bench/security.sh [--messages N] [--size BYTES] [--repeat R] [--binary PATH]
set -euo pipefail
messages=300000
size=100
repeat=3
binary="$(dirname "$0")/../dist/metaq"
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) messages="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
work="$(mktemp -d /tmp/metaq-security-bench-XXXXXX)"
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
"$binary" cert --out "$work/tls" --host 127.0.0.1 >/dev/null
token="bench-token-$(date +%s)-0123456789"
printf '[system]\nnumPartitions=1\n[topic=*]\n[user=bench]\ntoken=%s\nproduce=*\nconsume=*\n' \
  "$token" >"$work/auth.ini"
printf '[system]\nnumPartitions=1\n[topic=*]\n' >"$work/plain.ini"

# run MODE ROUND: starts a broker in MODE, runs produce then consume, prints two result lines.
run() {
  local mode="$1" round="$2" config="$work/plain.ini" serve_tls=() client=()
  case "$mode" in
    auth | tls+auth) config="$work/auth.ini"; client+=(--user bench --token "$token") ;;
  esac
  case "$mode" in
    tls | tls+auth)
      serve_tls=(--tls-cert "$work/tls/cert.pem" --tls-key "$work/tls/key.pem")
      client+=(--ca "$work/tls/cert.pem") ;;
  esac
  local data="$work/data-$mode-$round"
  "$binary" serve --config "$config" --port 0 --no-http --data "$data" \
    --ports-file "$work/ports" "${serve_tls[@]}" >"$work/serve.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 200); do [ -s "$work/ports" ] && break; sleep 0.05; done
  local port
  port="$(sed -E 's/.*"port":([0-9]+).*/\1/' "$work/ports")"
  rm -f "$work/ports"
  for kind in produce consume; do
    "$binary" bench "$kind" --broker "127.0.0.1:$port" --messages "$messages" --size "$size" \
      --json "${client[@]}" | sed -E "s/^/$mode $kind /"
  done
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
  rm -rf "$data"
}

results="$work/results"
for round in $(seq 1 "$repeat"); do
  for mode in plain auth tls tls+auth; do run "$mode" "$round" | tee -a "$results" >&2; done
done
echo
echo "median of $repeat runs, $messages messages of $size B, 1 connection, window 1024:"
printf '%-9s %-8s %12s %10s %12s\n' mode workload "msgs/s" "MB/s" "vs plain"
for kind in produce consume; do
  plain_rate=""
  for mode in plain auth tls tls+auth; do
    rates="$(grep "^$mode $kind " "$results" | sed -E 's/.*"messagesPerSecond":([0-9.]+).*/\1/' | sort -n)"
    median="$(echo "$rates" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    mbs="$(grep "^$mode $kind " "$results" | sed -E 's/.*"megabytesPerSecond":([0-9.]+).*/\1/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    [ "$mode" = plain ] && plain_rate="$median"
    printf '%-9s %-8s %12.0f %10.1f %11.0f%%\n' "$mode" "$kind" "$median" "$mbs" \
      "$(awk -v a="$median" -v b="$plain_rate" 'BEGIN {print 100 * a / b}')"
  done
done
