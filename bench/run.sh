#!/usr/bin/env bash
# The side-by-side comparison (issue #8): installs nats-server and redis-server from Debian if
# they are missing, builds dist/metaq if it is missing, then runs bench/compare.ts under a
# global timeout. Arguments go to compare.ts (--quick for a few-minute run, --out FILE.md,
# --only metaq,nats,redis, --sizes 100,1024, --repeat N, --messages N, --timeout SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]} > 0)); then
  echo "bench: installing ${missing[*]} from Debian" >&2
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bun=node_modules/.bin/bun
[[ -x $bun ]] || { echo "bench: run 'npm ci' first (it installs bun)" >&2; exit 2; }
[[ -d node_modules/nats && -d node_modules/ioredis ]] || {
  echo "bench: run 'npm ci' first (nats and ioredis are devDependencies)" >&2
  exit 2
}
if [[ ! -x dist/metaq ]]; then
  echo "bench: building dist/metaq" >&2
  npm run --silent build >/dev/null
fi

# A hard stop beyond compare.ts's own global timeout, in case it hangs.
limit=3900
for arg in "$@"; do [[ $arg == --quick ]] && limit=1200; done
exec timeout --kill-after=30 "$limit" "$bun" bench/compare.ts "$@"
