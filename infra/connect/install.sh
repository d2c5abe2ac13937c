#!/usr/bin/env bash
# Resolves, on first use, a Kafka Connect worker with the Debezium PostgreSQL connector and Apicurio's
# Kafka Connect converters from Maven Central (the poms beside this script), and prints the directory:
#
#   <dir>/libs/                                the worker's classpath (connect-runtime, kafka-tools, log4j2)
#   <dir>/plugins/debezium-connector-postgres/ a plugin.path entry (connector + Outbox Event Router SMT)
#   <dir>/plugins/apicurio-converter/          a plugin.path entry (io.apicurio.registry.utils.converter.*)
#
# The plugins get ServiceLoader manifests (sync-manifests), so the worker can run with
# plugin.discovery=service_load. Cached under CONNECT_DIST (default .stack/connect), one directory per version set; versions come from
# the poms and can be overridden with CONNECT_VERSION, DEBEZIUM_VERSION, APICURIO_CONVERTER_VERSION.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIST="${CONNECT_DIST:-$ROOT/.stack/connect}"
prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$HERE/$2" | head -n1; }
CONNECT_VERSION="${CONNECT_VERSION:-$(prop kafka.version pom.xml)}"
DEBEZIUM_VERSION="${DEBEZIUM_VERSION:-$(prop debezium.version debezium-postgres.pom.xml)}"
APICURIO_CONVERTER_VERSION="${APICURIO_CONVERTER_VERSION:-$(prop apicurio.version apicurio-converter.pom.xml)}"
DIR="$DIST/kafka-$CONNECT_VERSION-debezium-$DEBEZIUM_VERSION-apicurio-$APICURIO_CONVERTER_VERSION"

log() { printf '[connect] %s\n' "$*" >&2; }
die() { printf '[connect] ERROR: %s\n' "$*" >&2; exit 1; }

resolve() { # $1 pom, $2 output dir, $3.. extra maven arguments
  local pom="$1" out="$2"; shift 2
  mvn -q -B -Dstyle.color=never -f "$HERE/$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$out" "$@" >&2 || die "Maven could not resolve $pom"
}

if [ ! -f "$DIR/.complete" ]; then
  log "resolving Kafka Connect $CONNECT_VERSION, Debezium $DEBEZIUM_VERSION and the Apicurio converter $APICURIO_CONVERTER_VERSION from Maven Central (first use only)"
  rm -rf "$DIR.tmp"; mkdir -p "$DIR.tmp"
  resolve pom.xml "$DIR.tmp/libs" -Dkafka.version="$CONNECT_VERSION"
  # Debezium's own plugin archive, unpacked as a Connect user installs it.
  resolve debezium-postgres.pom.xml "$DIR.tmp/archives" -Ddebezium.version="$DEBEZIUM_VERSION" -DexcludeTransitive=true
  mkdir -p "$DIR.tmp/plugins"
  tar xzf "$DIR.tmp/archives/debezium-connector-postgres-$DEBEZIUM_VERSION-plugin.tar.gz" -C "$DIR.tmp/plugins" \
    || die "could not unpack the Debezium plugin archive"
  rm -rf "$DIR.tmp/archives"
  # The converter's jars without the Connect API, the Kafka clients and SLF4J (the worker serves those).
  resolve apicurio-converter.pom.xml "$DIR.tmp/plugins/apicurio-converter" -Dapicurio.version="$APICURIO_CONVERTER_VERSION" \
    -DexcludeGroupIds=org.apache.kafka,org.slf4j
  # ServiceLoader manifests for every plugin (Kafka's `connect-plugin-path sync-manifests`, the documented
  # step for plugin.discovery=service_load, which spares the worker a reflective scan of every jar at
  # start-up; the Apicurio converter ships without manifests, Debezium with them).
  java -cp "$DIR.tmp/libs/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" org.apache.kafka.tools.ConnectPluginPath \
    sync-manifests --plugin-path "$DIR.tmp/plugins" >"$DIR.tmp/sync-manifests.log" 2>&1 \
    || { tail -n 20 "$DIR.tmp/sync-manifests.log" >&2; die "connect-plugin-path sync-manifests failed"; }
  touch "$DIR.tmp/.complete"; rm -rf "$DIR"; mkdir -p "$(dirname "$DIR")"; mv "$DIR.tmp" "$DIR"
fi
echo "$DIR"
