#!/usr/bin/env bash
# Figures of the local stack: download sizes, cold start (fresh data) and warm start (existing data) of
# each server, and resident memory at idle. Runs a private stack on free ports (the shared one is left
# alone) and removes it afterwards.   bash bench/stack-figures.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
name="figures_$$"
export STACK_DIR="$ROOT/.stack/private-$name" STACK_DIST="$ROOT/.stack"
export KAFKA_PORT=$(free_port) KAFKA_CONTROLLER_PORT=$(free_port) REGISTRY_PORT=$(free_port) REGISTRY_MANAGEMENT_PORT=$(free_port)
export OUTBOX_DB="${name}_app" REGISTRY_DB="${name}_registry"
trap 'bash "$ROOT/infra/stack.sh" down >/dev/null 2>&1; rm -rf "$STACK_DIR"; for d in "$OUTBOX_DB" "$REGISTRY_DB"; do psql -h 127.0.0.1 -U postgres -qc "drop database if exists \"$d\" with (force)" >/dev/null; done' EXIT

bash "$ROOT/infra/stack.sh" up >/dev/null 2>&1   # make sure downloads exist (not timed)
bash "$ROOT/infra/stack.sh" down >/dev/null 2>&1
rm -rf "$STACK_DIR/kafka/data"; psql -h 127.0.0.1 -U postgres -qc "drop database \"$REGISTRY_DB\" with (force)"

ms() { date +%s%3N; }
timed_up() { # prints "kafka_ms registry_ms" by reading the script's own log lines' times
  local t0 t1 t2
  t0=$(ms); bash "$ROOT/infra/stack.sh" up 2>&1 | while IFS= read -r line; do
    case "$line" in *"kafka up"*|*"kafka already"*) echo "kafka $(( $(ms) - t0 ))";; *"registry up"*|*"registry already"*) echo "registry $(( $(ms) - t0 ))";; esac
  done
}
echo "download sizes:"
du -sh "$STACK_DIST"/kafka/libs-* "$STACK_DIST"/apicurio/apicurio-registry-* 2>/dev/null | sed 's/^/  /'
ls -l ~/.m2/repository/io/apicurio/apicurio-registry-app/*/*.tar.gz 2>/dev/null | awk '{printf "  apicurio assembly tar.gz: %.0f MB\n", $5/1048576}'
echo "cold start (fresh Kafka storage, empty registry database):"
cold=$(timed_up); echo "$cold" | awk '{print "  " $1 " ready after " $2 " ms (cumulative)"}'
sleep 15
echo "resident memory at idle (15 s after start):"
for s in kafka registry; do pid=$(cat "$STACK_DIR/run/$s.pid"); echo "  $s: $(( $(ps -o rss= -p "$pid") / 1024 )) MB"; done
bash "$ROOT/infra/stack.sh" down >/dev/null 2>&1
echo "warm start (existing data):"
warm=$(timed_up); echo "$warm" | awk '{print "  " $1 " ready after " $2 " ms (cumulative)"}'
echo "versions: Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/infra/kafka/pom.xml"), Apicurio ${APICURIO_VERSION:-3.3.3}; java $(java -version 2>&1 | head -1); $(nproc) cores"
