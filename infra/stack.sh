#!/usr/bin/env bash
# Local stack for kafka-outbox: Apache Kafka (KRaft: one combined node, or STACK_BROKERS brokers beside a
# controller), Apicurio Registry (Confluent-compatible API, PostgreSQL storage) and the machine's
# PostgreSQL. Everything it writes lives under .stack/.
#
#   infra/stack.sh up       start what is not running (idempotent), wait for health, write .stack/env
#   infra/stack.sh down     stop every server this script started
#   infra/stack.sh status   one line per server
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REGISTRY_PORT (8081),
# REGISTRY_MANAGEMENT_PORT (REGISTRY_PORT+1: Apicurio's health/metrics interface, loopback only),
# PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), OUTBOX_DB (outbox), REGISTRY_DB (apicurio_registry),
# KAFKA_VERSION (from infra/kafka/pom.xml), APICURIO_VERSION (3.3.3), STACK_TIMEOUT seconds (120),
# REGISTRY_JAVA_HOME (a JDK >= 21; Apicurio 3 is compiled for Java 21), KAFKA_JAVA_HOME (a JDK >= 17),
# STACK_DIR (.stack: data, logs, pids), STACK_DIST (where downloaded servers are unpacked; STACK_DIR),
# STACK_BROKERS (1): with N > 1, a KRaft controller on KAFKA_CONTROLLER_PORT and N brokers, broker i on
# KAFKA_PORT + 100*(i-1) (9092, 9192, 9292), each with a capped heap (KAFKA_BROKER_HEAP, -Xmx512m), and
# the cluster's defaults for internal topics at replication factor min(3, N), min.insync.replicas RF-1.
# STACK_REGISTRY_URL: use that (running) registry instead of starting one (e.g. a private stack whose
# faults are all on the Kafka side borrows the main stack's registry: one JVM less to start and feed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${STACK_DIR:-$ROOT/.stack}"
# Downloaded servers (Kafka jars, the Apicurio assembly) can be shared between stacks.
DIST="${STACK_DIST:-$STACK}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REGISTRY_PORT="${REGISTRY_PORT:-8081}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-$((REGISTRY_PORT + 1))}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
OUTBOX_DB="${OUTBOX_DB:-outbox}"
REGISTRY_DB="${REGISTRY_DB:-apicurio_registry}"
APICURIO_VERSION="${APICURIO_VERSION:-3.3.3}"
STACK_TIMEOUT="${STACK_TIMEOUT:-120}"
KAFKA_CLUSTER_ID="${KAFKA_CLUSTER_ID:-a2Fma2Etb3V0Ym94LWxvYw}"
STACK_BROKERS="${STACK_BROKERS:-1}"
case "$STACK_BROKERS" in [1-9]) ;; *) echo "[stack] ERROR: STACK_BROKERS must be a whole number from 1 to 9, got '$STACK_BROKERS'" >&2; exit 2 ;; esac
broker_port() { echo $((KAFKA_PORT + 100 * ($1 - 1))); }
# Replication of the cluster's internal topics: min(3, brokers); min.insync.replicas one less (at least 1).
KAFKA_RF=$(( STACK_BROKERS < 3 ? STACK_BROKERS : 3 ))
KAFKA_MIN_ISR=$(( KAFKA_RF > 1 ? KAFKA_RF - 1 : 1 ))

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Java -------------------------------------------------------------------------------------------
java_major() { "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
find_java() { # $1 = minimum major version; prints a java binary
  local min="$1" candidate major
  for candidate in ${2:+"$2/bin/java"} ${JAVA_HOME:+"$JAVA_HOME/bin/java"} $(command -v java || true) /usr/lib/jvm/*/bin/java; do
    [ -x "$candidate" ] || continue
    major="$(java_major "$candidate")"
    if [ -n "$major" ] && [ "$major" -ge "$min" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

# --- processes ----------------------------------------------------------------------------------------
pidfile() { echo "$STACK/run/$1.pid"; }
running_pid() { # prints the pid of server $1 if its process is alive and is ours
  local f pid
  f="$(pidfile "$1")"
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$STACK" || return 1
  echo "$pid"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
show_log_tail() { log "last lines of $1:"; tail -n 40 "$1" | sed 's/^/    /' >&2 || true; }

wait_for() { # $1 name, $2 log file, $3 pid, $4.. health command
  local name="$1" logf="$2" pid="$3"; shift 3
  local deadline=$((SECONDS + STACK_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail "$logf"; die "$name exited during start-up (log: $logf)"
    fi
    if "$@"; then return 0; fi
    sleep 0.5
  done
  show_log_tail "$logf"; die "$name did not become healthy within ${STACK_TIMEOUT}s (log: $logf)"
}

# --- PostgreSQL ---------------------------------------------------------------------------------------
psql_q() { psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -v ON_ERROR_STOP=1 -Atq "$@"; }
pg_up() {
  if ! pg_isready -h "$PGHOST" -p "$PGPORT" -q; then
    if [ "$PGHOST" = "127.0.0.1" ] || [ "$PGHOST" = "localhost" ]; then
      log "PostgreSQL is down; starting the machine's cluster"
      local ver; ver="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n1)"
      [ -n "$ver" ] || die "PostgreSQL is not reachable on $PGHOST:$PGPORT and no local cluster is installed"
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start || die "could not start PostgreSQL $ver"
      local i; for i in $(seq 1 60); do pg_isready -h "$PGHOST" -p "$PGPORT" -q && break; sleep 0.5; done
    fi
    pg_isready -h "$PGHOST" -p "$PGPORT" -q || die "PostgreSQL is not reachable on $PGHOST:$PGPORT"
  fi
  local db
  for db in "$OUTBOX_DB" "$REGISTRY_DB"; do
    if [ "$(psql_q -c "select 1 from pg_database where datname = '$db'")" != "1" ]; then
      psql_q -c "create database \"$db\"" 2>/dev/null || [ "$(psql_q -c "select 1 from pg_database where datname = '$db'")" = "1" ] \
        || die "could not create database $db"
      log "created database $db"
    fi
  done
}

# --- Kafka --------------------------------------------------------------------------------------------
kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/infra/kafka/pom.xml"; }
kafka_install() {
  local version="${KAFKA_VERSION:-$(kafka_version)}"
  local dir="$DIST/kafka/libs-$version"
  if [ ! -f "$dir/.complete" ]; then
    log "resolving Kafka $version from Maven Central (first run only)"
    rm -rf "$dir.tmp"
    mvn -q -B -Dstyle.color=never -f "$ROOT/infra/kafka/pom.xml" -Dkafka.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir.tmp" \
      >&2 || die "Maven could not resolve org.apache.kafka:kafka_2.13:$version"
    touch "$dir.tmp/.complete"; rm -rf "$dir"; mkdir -p "$(dirname "$dir")"; mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}
kafka_healthy() { port_open "$KAFKA_PORT"; }
KAFKA_LOG_FROM=1
kafka_started() { kafka_healthy && tail -n +"$KAFKA_LOG_FROM" "$STACK/kafka/server.log" | grep -q "Kafka Server started"; }
kafka_up() {
  local pid
  if pid="$(running_pid kafka)"; then
    kafka_healthy || wait_for kafka "$STACK/kafka/server.log" "$pid" kafka_healthy
    log "kafka already running (pid $pid, 127.0.0.1:$KAFKA_PORT)"; return 0
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by a process this stack did not start (set KAFKA_PORT)"
  local java libs; java="$(find_java 17 "${KAFKA_JAVA_HOME:-}")" || die "Kafka needs Java >= 17 (set KAFKA_JAVA_HOME)"
  libs="$(kafka_install)"
  mkdir -p "$STACK/kafka/data" "$STACK/run"
  cat >"$STACK/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$STACK/kafka/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
EOF
  if [ ! -f "$STACK/kafka/data/meta.properties" ]; then
    log "formatting Kafka storage"
    "$java" -cp "$libs/*" -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" kafka.tools.StorageTool format \
      -t "$KAFKA_CLUSTER_ID" -c "$STACK/kafka/server.properties" >"$STACK/kafka/format.log" 2>&1 \
      || { show_log_tail "$STACK/kafka/format.log"; die "formatting Kafka storage failed"; }
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  touch "$STACK/kafka/server.log"; KAFKA_LOG_FROM=$(( $(wc -l <"$STACK/kafka/server.log") + 1 ))
  KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx1g}"
  # shellcheck disable=SC2086
  nohup "$java" $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" -Dkafka.logs.dir="$STACK/kafka" \
    -cp "$libs/*" kafka.Kafka "$STACK/kafka/server.properties" >>"$STACK/kafka/server.log" 2>&1 &
  pid=$!; echo "$pid" >"$(pidfile kafka)"
  wait_for kafka "$STACK/kafka/server.log" "$pid" kafka_started
  log "kafka up (pid $pid)"
}

# --- Kafka with several brokers (STACK_BROKERS > 1): one KRaft controller and N brokers -----------------
kafka_node_props() { # $1 node name (controller | broker-<i>), $2 port (brokers), $3 node id
  local name="$1" port="${2:-}" id="$3" dir="$STACK/kafka-$1"
  mkdir -p "$dir/data"
  if [ "$name" = controller ]; then
    cat >"$dir/server.properties" <<EOF
process.roles=controller
node.id=$id
controller.quorum.voters=$id@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT
log.dirs=$dir/data
EOF
  else
    cat >"$dir/server.properties" <<EOF
process.roles=broker
node.id=$id
controller.quorum.voters=1000@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$KAFKA_RF
min.insync.replicas=$KAFKA_MIN_ISR
offsets.topic.replication.factor=$KAFKA_RF
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$KAFKA_RF
transaction.state.log.min.isr=$KAFKA_MIN_ISR
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$KAFKA_RF
share.coordinator.state.topic.min.isr=$KAFKA_MIN_ISR
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
replica.lag.time.max.ms=10000
EOF
  fi
  echo "$dir"
}
kafka_format() { # $1 node dir, $2 java, $3 libs: format the node's storage (a short-lived JVM: C1 only starts faster)
  "$2" -XX:TieredStopAtLevel=1 -cp "$3/*" -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" kafka.tools.StorageTool format \
    -t "$KAFKA_CLUSTER_ID" -c "$1/server.properties" >"$1/format.log" 2>&1
}
kafka_node_up() { # $1 node name, $2 port (empty for the controller), $3 node id, $4 java, $5 libs
  local name="$1" port="$2" id="$3" java="$4" libs="$5" pid dir
  dir="$(kafka_node_props "$name" "$port" "$id")"
  if pid="$(running_pid "kafka-$name")"; then log "kafka $name already running (pid $pid)"; return 0; fi
  local probe="${port:-$KAFKA_CONTROLLER_PORT}"
  port_open "$probe" && die "port $probe is taken by a process this stack did not start (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
  if [ ! -f "$dir/data/meta.properties" ]; then
    kafka_format "$dir" "$java" "$libs" || { show_log_tail "$dir/format.log"; die "formatting Kafka storage of $name failed"; }
  fi
  touch "$dir/server.log"
  local heap="${KAFKA_BROKER_HEAP:--Xms128m -Xmx512m}"
  [ "$name" = controller ] && heap="${KAFKA_CONTROLLER_HEAP:--Xms64m -Xmx256m}"
  # shellcheck disable=SC2086
  nohup "$java" $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" >>"$dir/server.log" 2>&1 &
  pid=$!; echo "$pid" >"$(pidfile "kafka-$name")"
  log "kafka $name starting (pid $pid${port:+, 127.0.0.1:$port})"
}
broker_started() { # $1 broker index, $2 first log line of this start
  port_open "$(broker_port "$1")" || return 1
  [ "$2" -eq 0 ] && return 0
  tail -n +"$2" "$STACK/kafka-broker-$1/server.log" | grep -q "Kafka Server started"
}
kafka_broker_list() {
  local i out=""
  for i in $(seq 1 "$STACK_BROKERS"); do out="${out:+$out,}127.0.0.1:$(broker_port "$i")"; done
  echo "$out"
}
kafka_cluster_up() {
  local java libs i
  java="$(find_java 17 "${KAFKA_JAVA_HOME:-}")" || die "Kafka needs Java >= 17 (set KAFKA_JAVA_HOME)"
  libs="$(kafka_install)"
  mkdir -p "$STACK/run"
  # A fresh cluster: format every node's storage at once (one JVM each; on a busy machine, one after
  # the other took minutes).
  local dirs=() pids=() n name dir
  for n in controller $(seq 1 "$STACK_BROKERS"); do
    if [ "$n" = controller ]; then name=controller; dir="$(kafka_node_props controller "" 1000)"; else name="broker-$n"; dir="$(kafka_node_props "$name" "$(broker_port "$n")" "$n")"; fi
    running_pid "kafka-$name" >/dev/null && continue
    [ -f "$dir/data/meta.properties" ] && continue
    kafka_format "$dir" "$java" "$libs" & pids+=($!); dirs+=("$dir")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { show_log_tail "${dirs[$i]}/format.log"; die "formatting Kafka storage in ${dirs[$i]} failed"; }
  done
  kafka_node_up controller "" 1000 "$java" "$libs"
  wait_for "kafka controller" "$STACK/kafka-controller/server.log" "$(cat "$(pidfile kafka-controller)")" port_open "$KAFKA_CONTROLLER_PORT"
  local from=()
  for i in $(seq 1 "$STACK_BROKERS"); do
    touch "$STACK/kafka-broker-$i/server.log" 2>/dev/null || true
    from[$i]=$(( $( (wc -l <"$STACK/kafka-broker-$i/server.log") 2>/dev/null || echo 0) + 1 ))
    running_pid "kafka-broker-$i" >/dev/null && from[$i]=0 # already running: its port is enough
    kafka_node_up "broker-$i" "$(broker_port "$i")" "$i" "$java" "$libs"
  done
  for i in $(seq 1 "$STACK_BROKERS"); do
    wait_for "kafka broker-$i" "$STACK/kafka-broker-$i/server.log" "$(cat "$(pidfile "kafka-broker-$i")")" \
      broker_started "$i" "${from[$i]}"
  done
  log "kafka up: $STACK_BROKERS brokers ($(kafka_broker_list)), controller 127.0.0.1:$KAFKA_CONTROLLER_PORT"
}

# --- Apicurio Registry --------------------------------------------------------------------------------
registry_install() {
  local dir="$DIST/apicurio/apicurio-registry-$APICURIO_VERSION"
  if [ ! -f "$dir/.complete" ]; then
    log "fetching Apicurio Registry $APICURIO_VERSION (all assembly) from Maven Central (first run only)"
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    # The 'all' assembly is self-contained: no transitive resolution (its pom names artifacts Central lacks).
    mvn -q -B -Dstyle.color=never dependency:copy -Dtransitive=false -DoutputDirectory="$dir.tmp" \
      -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
      >&2 || die "Maven could not fetch io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all"
    tar xzf "$dir.tmp"/apicurio-registry-app-*-all.tar.gz -C "$dir.tmp" && rm -f "$dir.tmp"/apicurio-registry-app-*-all.tar.gz
    [ -f "$dir.tmp/quarkus-run.jar" ] || die "the Apicurio assembly has no quarkus-run.jar"
    touch "$dir.tmp/.complete"; rm -rf "$dir"; mkdir -p "$(dirname "$dir")"; mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}
registry_url() { echo "${STACK_REGISTRY_URL:-http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7}"; }
registry_healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(registry_url)/subjects")" = "200" ]; }
registry_up() {
  if [ -n "${STACK_REGISTRY_URL:-}" ]; then
    registry_healthy || die "the registry at STACK_REGISTRY_URL=$STACK_REGISTRY_URL does not answer"
    log "registry: using $STACK_REGISTRY_URL (not started by this stack)"; return 0
  fi
  local pid
  if pid="$(running_pid registry)"; then
    registry_healthy || wait_for registry "$STACK/apicurio/registry.log" "$pid" registry_healthy
    log "registry already running (pid $pid, $(registry_url))"; return 0
  fi
  port_open "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by a process this stack did not start (set REGISTRY_PORT)"
  local java dir; java="$(find_java 21 "${REGISTRY_JAVA_HOME:-}")" \
    || die "Apicurio Registry $APICURIO_VERSION needs Java >= 21 (set REGISTRY_JAVA_HOME)"
  dir="$(registry_install)"
  mkdir -p "$STACK/run"
  log "starting Apicurio Registry $APICURIO_VERSION on 127.0.0.1:$REGISTRY_PORT (storage: PostgreSQL database $REGISTRY_DB)"
  (
    cd "$dir"
    export QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT="$REGISTRY_PORT" QUARKUS_MANAGEMENT_HOST=127.0.0.1 QUARKUS_MANAGEMENT_PORT="$REGISTRY_MANAGEMENT_PORT"
    export APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql
    export APICURIO_DATASOURCE_URL="jdbc:postgresql://$PGHOST:$PGPORT/$REGISTRY_DB"
    export APICURIO_DATASOURCE_USERNAME="$PGUSER" APICURIO_DATASOURCE_PASSWORD="${PGPASSWORD:-unused}"
    exec nohup "$java" ${REGISTRY_HEAP:--Xms128m -Xmx512m} -Dstack.dir="$STACK" -jar "$dir/quarkus-run.jar" \
      >>"$STACK/apicurio/registry.log" 2>&1
  ) &
  pid=$!; echo "$pid" >"$(pidfile registry)"
  wait_for registry "$STACK/apicurio/registry.log" "$pid" registry_healthy
  log "registry up (pid $pid)"
}

# --- commands -----------------------------------------------------------------------------------------
write_env() {
  cat >"$STACK/env" <<EOF
DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$OUTBOX_DB
KAFKA_BROKERS=$(if [ "$STACK_BROKERS" -gt 1 ]; then kafka_broker_list; else echo "127.0.0.1:$KAFKA_PORT"; fi)
SCHEMA_REGISTRY_URL=$(registry_url)
EOF
  log "wrote $STACK/env"
}

stop_one() {
  local name="$1" pid i
  pid="$(running_pid "$name")" || { rm -f "$(pidfile "$name")"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 30s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$(pidfile "$name")"
}

cmd_up() {
  mkdir -p "$STACK/run" "$STACK/kafka" "$STACK/apicurio"
  local t0=$SECONDS
  pg_up
  if [ "$STACK_BROKERS" -gt 1 ]; then kafka_cluster_up; else kafka_up; fi
  registry_up
  write_env
  log "stack ready in $((SECONDS - t0))s"
}

cmd_down() {
  stop_one registry
  local f
  for f in "$STACK"/run/kafka-broker-*.pid; do [ -e "$f" ] && stop_one "$(basename "$f" .pid)"; done
  stop_one kafka-controller
  stop_one kafka
  # Anything else of ours (a server started by an older pid file) must not survive 'down'.
  local stray; stray="$( (pgrep -f -- "$STACK/kafka[^ ]*/server.properties"; pgrep -f -- "-Dstack.dir=$STACK -jar") || true)"
  if [ -n "$stray" ]; then log "stopping stray processes: $(echo $stray)"; kill -KILL $stray 2>/dev/null || true; fi
  log "stack stopped (PostgreSQL is the machine's and keeps running)"
}

rss_mib() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

cmd_status() {
  local pid rc=0
  if pg_isready -h "$PGHOST" -p "$PGPORT" -q; then log "postgres  up    $PGHOST:$PGPORT"; else log "postgres  DOWN  $PGHOST:$PGPORT"; rc=1; fi
  if [ "$STACK_BROKERS" -gt 1 ]; then
    local i port
    if pid="$(running_pid kafka-controller)" && port_open "$KAFKA_CONTROLLER_PORT"; then log "kafka controller up   127.0.0.1:$KAFKA_CONTROLLER_PORT (pid $pid, RSS $(rss_mib "$pid") MiB)"; else log "kafka controller DOWN 127.0.0.1:$KAFKA_CONTROLLER_PORT"; rc=1; fi
    for i in $(seq 1 "$STACK_BROKERS"); do
      port="$(broker_port "$i")"
      if pid="$(running_pid "kafka-broker-$i")" && port_open "$port"; then log "kafka broker-$i    up   127.0.0.1:$port (pid $pid, RSS $(rss_mib "$pid") MiB)"; else log "kafka broker-$i    DOWN 127.0.0.1:$port"; rc=1; fi
    done
  elif pid="$(running_pid kafka)" && kafka_healthy; then log "kafka     up    127.0.0.1:$KAFKA_PORT (pid $pid)"; else log "kafka     DOWN  127.0.0.1:$KAFKA_PORT"; rc=1; fi
  if [ -n "${STACK_REGISTRY_URL:-}" ]; then
    if registry_healthy; then log "registry  up    $(registry_url) (external)"; else log "registry  DOWN  $(registry_url) (external)"; rc=1; fi
  elif pid="$(running_pid registry)" && registry_healthy; then log "registry  up    $(registry_url) (pid $pid)"; else log "registry  DOWN  $(registry_url)"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: infra/stack.sh up|down|status" >&2; exit 2 ;;
esac
