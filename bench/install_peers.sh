#!/usr/bin/env bash
# Puts the comparison's peers in place and prints the nats-server binary to use:
# - nats-server 2.10.27 from Debian's trixie suite (the first Debian NATS with JetStream's
#   `sync_interval: always`), fetched as one .deb with `apt-get download` through a source list and
#   an apt state of its own under $PEERS, and unpacked with `dpkg -x` into $PEERS/nats. The
#   system's sources, lists, cache and installed packages are never touched, nothing is upgraded.
# - redis-server from the system's own suite (apt-get install, as the system's Debian has it).
# Re-running reuses what is already unpacked. Every step has a time limit.
#
#   bench/install_peers.sh            # prints the path of nats-server on stdout
#   METAQ_BENCH_PEERS=DIR             # where to keep the private apt state and the binary
#   METAQ_BENCH_MIRROR=URL            # Debian mirror (default: the system's deb.debian.org)
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_VERSION=2.10.27
PEERS=${METAQ_BENCH_PEERS:-bench/.peers}
MIRROR=${METAQ_BENCH_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$PEERS"
PEERS=$(cd "$PEERS" && pwd)
nats=$PEERS/nats/usr/sbin/nats-server

if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi

if ! command -v redis-server >/dev/null; then
  echo "bench: installing redis-server from the system's Debian suite" >&2
  timeout 300 "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
fi

if [[ ! -x $nats ]] || ! "$nats" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  echo "bench: fetching nats-server $NATS_VERSION from Debian trixie into $PEERS" >&2
  apt=$PEERS/apt
  mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/lists/partial" \
    "$apt/cache/archives/partial" "$PEERS/deb"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" \
    >"$apt/etc/sources.list"
  # Every path apt reads or writes points into $apt; the dpkg status is empty, so nothing the
  # system has installed is considered and nothing is installed.
  options=(
    -o "Dir::Etc::sourcelist=$apt/etc/sources.list"
    -o "Dir::Etc::sourceparts=$apt/etc/sources.list.d"
    -o "Dir::Etc::preferences=$apt/etc/preferences"
    -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::State::status=/dev/null"
    -o "Dir::Cache=$apt/cache"
    -o "APT::Sandbox::User=$(id -un)"
  )
  timeout 300 apt-get "${options[@]}" -qq update
  candidate=$(apt-cache "${options[@]}" policy nats-server | awk '/Candidate:/ { print $2 }')
  case $candidate in
  "$NATS_VERSION"-*) ;;
  *)
    echo "bench: Debian trixie offers nats-server '$candidate', not $NATS_VERSION" >&2
    exit 2
    ;;
  esac
  rm -f "$PEERS"/deb/nats-server_*.deb
  (cd "$PEERS/deb" && timeout 300 apt-get "${options[@]}" -qq download "nats-server=$candidate")
  rm -rf "$PEERS/nats"
  dpkg -x "$PEERS"/deb/nats-server_*.deb "$PEERS/nats"
  "$nats" --version | grep -q "v$NATS_VERSION" || {
    echo "bench: the unpacked $nats is not version $NATS_VERSION" >&2
    exit 2
  }
fi
echo "$nats"
