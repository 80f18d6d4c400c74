#!/usr/bin/env bash
# Builds the original MetaQ broker (Metamorphosis 1.4.6, Java) from its sources into
# $PEERS/metaq-java, for the side-by-side comparison (bench/compare.ts, issue 20), and prints that
# directory on stdout. Nothing here runs at test time; `npm run bench` calls it through
# bench/run.sh and skips the peer, saying why, when it fails.
#
# What it builds, each at a pinned commit (the versions the broker's pom.xml asks for):
# - killme2008/Metamorphosis   metamorphosis-commons + metamorphosis-server (1.4.6.3-SNAPSHOT)
# - killme2008/gecko           the broker's network layer (1.1.5-SNAPSHOT)
# - sgroschupf/zkclient        0.3.0 (the pom's com.101tec:zkclient:0.3), minus ZkServer, a
#                              test helper written against ZooKeeper 3.3's server classes
# - killme2008/aviatorscript   aviator-2.3.0 (reads the numbers in server.ini)
# compiled with the system's javac (`--release 8`) against Debian's jars of the other
# dependencies (installed with apt-get when missing), into one jar, lib/metamorphosis.jar.
# The broker runs with `java -cp $(cat classpath) com.taobao.metamorphosis.server.MetamorphosisStartup
# -f /abs/path/server.ini` and needs a ZooKeeper (Debian's, from libzookeeper-java); the
# comparison starts one per broker.
#
# Sources: each repository is cloned from GitHub (bare, into $PEERS/metaq-java/git) unless a local
# git repository (bare or not) that holds the pinned commit is named:
#   METAQ_JAVA_SRC=DIR            Metamorphosis
#   METAQ_JAVA_GECKO_SRC=DIR      gecko
#   METAQ_JAVA_ZKCLIENT_SRC=DIR   zkclient
#   METAQ_JAVA_AVIATOR_SRC=DIR    aviatorscript
#   METAQ_BENCH_PEERS=DIR         where the build goes (default bench/.peers)
# Re-running with the same pins reuses the build (the file `stamp`); delete $PEERS/metaq-java to
# rebuild. Every network and apt step has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."

METAMORPHOSIS_COMMIT=1884b10620dbd640aaf85102243ca295703fbb4a
GECKO_COMMIT=0873b690ffde51e40e6eadfcd5d599eb4e3b642d
ZKCLIENT_COMMIT=26f4d50fe8b3f5f6a4aa3747f254162c6a6c410b # tag 0.3.0
AVIATOR_COMMIT=30b27d597f2bf20f275f466cfc9f4e0b9c8bf763  # tag aviator-2.3.0
BROKER_VERSION=1.4.6.3-SNAPSHOT
# Bump when the build recipe changes, so an old build is not reused.
RECIPE=1

PEERS=${METAQ_BENCH_PEERS:-bench/.peers}
mkdir -p "$PEERS"
PEERS=$(cd "$PEERS" && pwd)
HOME_DIR=$PEERS/metaq-java
JAVA_DIR=/usr/share/java

fail() {
  echo "bench: metaq-java: $*" >&2
  exit 2
}

# Debian packages and the jars of theirs the broker needs (compile and run time).
PACKAGES=(libcommons-logging-java liblog4j1.2-java libzookeeper-java libjackson-json-java
  libhessian-java libcommons-lang-java libslf4j-java libcommons-io-java libcommons-cli-java
  libquartz2-java libini4j-java libprotobuf-java libcommons-beanutils-java)
JARS=(commons-logging.jar log4j-1.2.jar zookeeper.jar zookeeper-jute.jar jackson-core-lgpl.jar
  jackson-mapper-lgpl.jar hessian.jar commons-lang.jar slf4j-api.jar slf4j-log4j12.jar
  commons-io.jar commons-cli.jar quartz2.jar ini4j.jar protobuf.jar commons-beanutils.jar)

missing_jars() {
  local jar
  for jar in "${JARS[@]}"; do [[ -f $JAVA_DIR/$jar ]] || echo "$jar"; done
}

ensure_packages() {
  local need=()
  command -v javac >/dev/null && command -v java >/dev/null || need+=(default-jdk-headless)
  [[ -z $(missing_jars) ]] || need+=("${PACKAGES[@]}")
  ((${#need[@]} == 0)) && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || fail "needs ${need[*]} (apt-get install as root)"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null || fail "needs ${need[*]} and this system has no apt-get"
  echo "bench: metaq-java: installing ${need[*]} (apt-get)" >&2
  timeout 300 "${sudo[@]}" apt-get update -qq ||
    fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo[@]}" apt-get install -y -qq "${need[@]}" \
    >/dev/null || fail "apt-get install ${need[*]} failed"
  [[ -z $(missing_jars) ]] || fail "still missing under $JAVA_DIR: $(missing_jars | tr '\n' ' ')"
  command -v javac >/dev/null || fail "no javac after installing default-jdk-headless"
}

classpath() {
  local jar entries=("$HOME_DIR/lib/metamorphosis.jar")
  for jar in "${JARS[@]}"; do entries+=("$JAVA_DIR/$jar"); done
  (IFS=:; echo "${entries[*]}")
}

stamp() {
  echo "recipe $RECIPE metamorphosis $METAMORPHOSIS_COMMIT gecko $GECKO_COMMIT" \
    "zkclient $ZKCLIENT_COMMIT aviator $AVIATOR_COMMIT javac $(javac -version 2>&1)"
}

# A git directory holding `commit`: the named local repository, else a bare clone from GitHub.
git_dir_for() {
  local name=$1 github=$2 commit=$3 local_src=$4 dir
  if [[ -n $local_src ]]; then
    [[ -d $local_src ]] || fail "$name: $local_src is not a directory"
    if [[ -d $local_src/.git ]]; then dir=$local_src/.git; else dir=$local_src; fi
    git --git-dir="$dir" rev-parse --git-dir >/dev/null 2>&1 ||
      fail "$name: $local_src is not a git repository"
  else
    dir=$HOME_DIR/git/$name.git
    if [[ ! -d $dir ]]; then
      echo "bench: metaq-java: cloning https://github.com/$github" >&2
      timeout 600 git clone --quiet --bare "https://github.com/$github.git" "$dir.partial" ||
        fail "$name: cannot clone https://github.com/$github (no network? set the *_SRC variable to a local copy)"
      mv "$dir.partial" "$dir"
    fi
  fi
  git --git-dir="$dir" cat-file -e "$commit^{commit}" 2>/dev/null ||
    fail "$name: $dir does not have commit $commit"
  echo "$dir"
}

extract() {
  local name=$1 github=$2 commit=$3 local_src=$4 dir
  shift 4
  dir=$(git_dir_for "$name" "$github" "$commit" "$local_src")
  mkdir -p "$HOME_DIR/src/$name"
  git --git-dir="$dir" archive "$commit" "$@" | tar -x -C "$HOME_DIR/src/$name"
}

ensure_packages
command -v git >/dev/null || fail "needs git"
if [[ -f $HOME_DIR/stamp && -f $HOME_DIR/lib/metamorphosis.jar && $(cat "$HOME_DIR/stamp") == "$(stamp)" ]]; then
  classpath >"$HOME_DIR/classpath"
  echo "$HOME_DIR"
  exit 0
fi

echo "bench: metaq-java: building the original MetaQ broker into $HOME_DIR" >&2
rm -rf "$HOME_DIR/src" "$HOME_DIR/classes" "$HOME_DIR/lib" "$HOME_DIR/stamp"
extract Metamorphosis killme2008/Metamorphosis "$METAMORPHOSIS_COMMIT" "${METAQ_JAVA_SRC:-}" \
  metamorphosis-commons metamorphosis-server
extract gecko killme2008/gecko "$GECKO_COMMIT" "${METAQ_JAVA_GECKO_SRC:-}" src/main
extract zkclient sgroschupf/zkclient "$ZKCLIENT_COMMIT" "${METAQ_JAVA_ZKCLIENT_SRC:-}" src/main
extract aviator killme2008/aviatorscript "$AVIATOR_COMMIT" "${METAQ_JAVA_AVIATOR_SRC:-}" src/main

src=$HOME_DIR/src
classes=$HOME_DIR/classes
mkdir -p "$classes" "$HOME_DIR/lib"
compile_cp=$(classpath):$classes
# -nowarn and -Xlint:none: 2012 code against today's JDK warns a lot; the sources are not ours.
javac_opts=(-nowarn -Xlint:none -proc:none --release 8 -J-Xmx512m -d "$classes" -cp "$compile_cp")
compile() {
  local label=$1 encoding=$2 list=$HOME_DIR/sources.txt
  shift 2
  find "$@" -name '*.java' | grep -v '/zkclient/ZkServer\.java$' >"$list"
  echo "bench: metaq-java: javac $label ($(wc -l <"$list") files)" >&2
  javac "${javac_opts[@]}" -encoding "$encoding" @"$list" 2>"$HOME_DIR/javac.log" || {
    tail -20 "$HOME_DIR/javac.log" >&2
    fail "javac $label failed (log: $HOME_DIR/javac.log)"
  }
}
compile zkclient UTF-8 "$src/zkclient/src/main/java"
compile aviator UTF-8 "$src/aviator/src/main/java"
# Alibaba's sources are GBK (their comments are Chinese).
compile gecko GBK "$src/gecko/src/main/java"
compile metamorphosis GBK "$src/Metamorphosis/metamorphosis-commons/src/main/java" \
  "$src/Metamorphosis/metamorphosis-server/src/main/java"
# The `version` command answers with build.properties, which Maven would have filtered.
sed "s/\${pom.version}/$BROKER_VERSION/" \
  "$src/Metamorphosis/metamorphosis-server/src/main/resources/build.properties" \
  >"$classes/build.properties"
(cd "$classes" && jar --create --file "$HOME_DIR/lib/metamorphosis.jar" .)
rm -rf "$classes" "$HOME_DIR/sources.txt"
classpath >"$HOME_DIR/classpath"
{
  echo "MetaQ (Metamorphosis) $BROKER_VERSION: killme2008/Metamorphosis ${METAMORPHOSIS_COMMIT:0:10}," \
    "gecko ${GECKO_COMMIT:0:10}, zkclient 0.3.0, aviator 2.3.0; $(java -version 2>&1 | head -1)"
} >"$HOME_DIR/VERSION"
stamp >"$HOME_DIR/stamp"
echo "bench: metaq-java: built $(cat "$HOME_DIR/VERSION")" >&2
echo "$HOME_DIR"
