#!/usr/bin/env bash
# The side-by-side comparison (issues #8 and #20): puts the peers in place with
# bench/install_peers.sh (nats-server 2.10.27 unpacked from Debian trixie into bench/.peers,
# redis-server from the system's Debian) and bench/install_metaq_java.sh (the original MetaQ
# broker built from source into bench/.peers/metaq-java, skipped with the reason when it cannot
# be), builds dist/metaq if it is missing, then runs
# bench/compare.ts under a global timeout. Arguments go to compare.ts (--quick for a run of under
# ten minutes, --out FILE.md, --json FILE, --only metaq,nats,redis, --sizes 100,1024, --repeat N,
# --messages N, --timeout SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."

METAQ_BENCH_NATS=$(bash bench/install_peers.sh)
export METAQ_BENCH_NATS

# The original MetaQ broker (Java), built from source; the comparison runs without it (and says
# why) when it cannot be built here.
java_log=$(mktemp)
if METAQ_JAVA_HOME=$(bash bench/install_metaq_java.sh 2>"$java_log"); then
  cat "$java_log" >&2
  export METAQ_JAVA_HOME
else
  cat "$java_log" >&2
  METAQ_JAVA_SKIPPED=$(grep 'metaq-java:' "$java_log" | tail -1 | sed 's/^bench: metaq-java: //' || true)
  export METAQ_JAVA_SKIPPED=${METAQ_JAVA_SKIPPED:-bench/install_metaq_java.sh failed}
  unset METAQ_JAVA_HOME
  echo "bench: original MetaQ (Java) skipped: $METAQ_JAVA_SKIPPED" >&2
fi
rm -f "$java_log"

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

# A hard stop beyond compare.ts's own global timeout (5400 s, quick 1500 s), in case it hangs.
limit=5700
for arg in "$@"; do [[ $arg == --quick ]] && limit=1600; done
exec timeout --kill-after=30 "$limit" "$bun" bench/compare.ts "$@"
