#!/usr/bin/env bash
# A local Switchboard cluster as host processes: a JetStream cluster of three
# nats-servers, three gateways over NATS and HAProxy in front (docker/haproxy.cfg):
# ws:// on 8000, wss:// on 8443 with a development certificate (scripts/dev-cert.sh).
#
#   scripts/cluster.sh up       start what is not running, wait until ready, print the URLs
#   scripts/cluster.sh down     stop everything (SIGTERM, then SIGKILL after a grace period)
#   scripts/cluster.sh status   list the processes and whether they run
#
# Pid files and logs: .run/cluster/<name>.pid and .run/cluster/<name>.log;
# the JetStream stores: .run/cluster/natsN-store (kept across down/up); the
# development CA and HAProxy's certificate: .run/tls (made once, shared with compose).
# NATS has a user per role (README, "NATS users and permissions"): nats-config
# writes .run/cluster/nats-auth.conf on every `up`, their random development
# passwords are in .run/cluster/nats-passwords.env (made once, mode 600);
# nats-server reads them from its environment, each gateway and service gets
# its own user's.
#
# Environment (all optional):
#   CLUSTER_BROKER   SWITCHBOARD_BROKER for the gateways (default nats; `memory`
#                    runs three independent embedded gateways, for testing this script)
#   CLUSTER_TIMEOUT  seconds `up` waits for readiness (default 60)
#   CLUSTER_GRACE    seconds `down` waits after SIGTERM before SIGKILL (default 15)
#   SWITCHBOARD_TOKEN_HMAC_SECRET_KEY, SWITCHBOARD_API_KEY
#                    default to DEV_SECRET / DEV_API_KEY (which the Makefile passes)
#                    and else to the Makefile's development values
#   SWITCHBOARD_DEMO default true here: the demo page's token endpoint (development only)
#   SWITCHBOARD_PUSHER_APPS default: the development Pusher app app-id / app-key / app-secret
#   SWITCHBOARD_ALLOWED_ORIGINS default: the demo page through HAProxy, http:// and https://
#   Other SWITCHBOARD_* variables (SWITCHBOARD_LOG_LEVEL, SWITCHBOARD_NAMESPACES, ...)
#   reach the gateways unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run/cluster"
TLS_DIR="$ROOT/.run/tls"
NODE="${NODE:-node}"

BROKER="${CLUSTER_BROKER:-nats}"
TIMEOUT="${CLUSTER_TIMEOUT:-60}"
GRACE="${CLUSTER_GRACE:-15}"
SECRET="${SWITCHBOARD_TOKEN_HMAC_SECRET_KEY:-${DEV_SECRET:-switchboard-dev-secret}}"
API_KEY="${SWITCHBOARD_API_KEY:-${DEV_API_KEY:-switchboard-dev-api-key}}"
DEMO="${SWITCHBOARD_DEMO:-true}"
DEV_APP='[{"id":"app-id","key":"app-key","secret":"app-secret"}]'
PUSHER_APPS="${SWITCHBOARD_PUSHER_APPS:-${DEV_PUSHER_APPS:-$DEV_APP}}"

# natsN listens on 4221+N (clients), 8221+N (monitoring) and 6221+N (cluster routes).
NATS_NODES=(nats1 nats2 nats3)
nats_port() { echo $((4221 + ${1#nats})); }
nats_monitor_port() { echo $((8221 + ${1#nats})); }
nats_route_port() { echo $((6221 + ${1#nats})); }
NATS_URL="$(for n in "${NATS_NODES[@]}"; do printf 'nats://127.0.0.1:%s,' "$(nats_port "$n")"; done)"
NATS_URL="${NATS_URL%,}"
NATS_ROUTES="$(for n in "${NATS_NODES[@]}"; do printf 'nats://127.0.0.1:%s,' "$(nats_route_port "$n")"; done)"
NATS_ROUTES="${NATS_ROUTES%,}"
GATEWAYS=(gw1 gw2 gw3)
HAPROXY_PORT=8000
HAPROXY_TLS_PORT=8443
HAPROXY_STATS_PORT=8404
# Browser pages from HAProxy, over either bind (the gateways' SWITCHBOARD_ALLOWED_ORIGINS).
ORIGINS="http://localhost:$HAPROXY_PORT,http://127.0.0.1:$HAPROXY_PORT,https://localhost:$HAPROXY_TLS_PORT,https://127.0.0.1:$HAPROXY_TLS_PORT"
# gwN listens on 8000+N (clients), 9000+N (internal) and 10000+N (gRPC).
client_port() { echo $((8000 + ${1#gw})); }
internal_port() { echo $((9000 + ${1#gw})); }
grpc_port() { echo $((10000 + ${1#gw})); }
ports_of() {
  case "$1" in
    nats*) echo "$(nats_port "$1") $(nats_monitor_port "$1") $(nats_route_port "$1")" ;;
    haproxy) echo "$HAPROXY_PORT $HAPROXY_TLS_PORT $HAPROXY_STATS_PORT" ;;
    gw*) echo "$(client_port "$1") $(internal_port "$1") $(grpc_port "$1")" ;;
  esac
}

# The example backend services, each a process of its own: "name|command".
# They reach the gateways over NATS only (server API on the bus).
SERVICES=(
  "chat|$NODE services/chat/dist/src/main.js"
  "store|$NODE services/store/dist/src/main.js"
  "jobs|$NODE services/jobs/dist/src/main.js"
)

# The NATS user of an example service: service-<the namespace it owns>, as nats-config names them.
service_user() { case "$1" in chat) echo service-room ;; *) echo "service-$1" ;; esac; }
NATS_AUTH="$RUN_DIR/nats-auth.conf"
NATS_PASSWORDS="$RUN_DIR/nats-passwords.env"

log() { echo "cluster: $*" >&2; }
die() {
  log "$*"
  exit 1
}

alive() { # the pid in NAME.pid runs
  local pid
  [ -f "$RUN_DIR/$1.pid" ] && pid="$(<"$RUN_DIR/$1.pid")" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

pid_of() { # prints the pid of a running process we started, else fails
  alive "$1" || return 1
  local pid
  pid="$(<"$RUN_DIR/$1.pid")"
  # Guard against a recycled pid (say after a reboot): the program must be ours.
  [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)" = "$(<"$RUN_DIR/$1.cmd")" ] || return 1
  echo "$pid"
}

# start NAME CMD... : runs CMD in the background (env as set by the caller),
# output to NAME.log, pid to NAME.pid. Skips a process that already runs.
start() {
  local name="$1"
  shift
  if pid_of "$name" >/dev/null; then
    log "$name already runs (pid $(pid_of "$name"))"
    return
  fi
  echo "=== $(date -u +%FT%TZ) $*" >>"$RUN_DIR/$name.log"
  (cd "$ROOT" && exec nohup "$@" >>"$RUN_DIR/$name.log" 2>&1 </dev/null) &
  echo "$!" >"$RUN_DIR/$name.pid"
  echo "$1" >"$RUN_DIR/$name.cmd" # argv[0] once nohup has exec'd it (see pid_of)
  STARTED+=("$name")
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_status() { # prints the HTTP status of GET URL, 000 when nothing answers
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

http_body() { curl -s --max-time 2 "$1" 2>/dev/null || true; }

# wait_for DESCRIPTION COMMAND... : polls COMMAND until it succeeds; fails when
# one of the processes started by this run exited, or after TIMEOUT seconds.
wait_for() {
  local what="$1" deadline=$((SECONDS + TIMEOUT)) name
  shift
  until "$@"; do
    for name in "${STARTED[@]}"; do
      alive "$name" || fail_up "$name exited while waiting for $what" "$name"
    done
    [ "$SECONDS" -lt "$deadline" ] || fail_up "timed out after ${TIMEOUT}s waiting for $what" "${STARTED[@]}"
    sleep 0.2
  done
}

# fail_up MESSAGE NAME... : shows what NAMEs logged since this run started
# them, stops everything this run started, and exits 1.
fail_up() {
  local message="$1" name
  shift
  log "$message"
  for name in "$@"; do
    log "--- $RUN_DIR/$name.log (this run, last 20 lines)"
    awk '/^=== /{n=0; delete l; next} {l[n++]=$0} END{for(i=(n>20?n-20:0);i<n;i++) print l[i]}' \
      "$RUN_DIR/$name.log" >&2 || true
  done
  log "stopping what this run started (logs stay in $RUN_DIR)"
  for name in "${STARTED[@]}"; do stop "$name"; done
  exit 1
}

nats_ready() { [ "$(http_status "http://127.0.0.1:$(nats_monitor_port "$1")/healthz")" = 200 ]; }
gateway_ready() { [ "$(http_status "http://127.0.0.1:$(internal_port "$1")/readyz")" = 200 ]; }
haproxy_ready() { # HAProxy answers and every gateway is UP with a passed /readyz check
  # (servers count as UP at start-up before their first check, hence both).
  local metrics name want=()
  metrics="$(http_body "http://127.0.0.1:$HAPROXY_STATS_PORT/metrics")"
  for name in "${GATEWAYS[@]}"; do
    want+=("haproxy_server_status{proxy=\"gateways\",server=\"$name\",state=\"UP\"} 1"
      "haproxy_server_check_status{proxy=\"gateways\",server=\"$name\",state=\"L7OK\"} 1")
  done
  [ "$(grep -cxF -f <(printf '%s\n' "${want[@]}") <<<"$metrics")" -eq "${#want[@]}" ]
}

# nats_users: writes the NATS users (the gateways' SWITCHBOARD_NATS_PREFIX and
# SWITCHBOARD_NAMESPACES, as they see them) and a random password for each user
# that has none yet.
nats_users() {
  "$NODE" "$ROOT/services/gateway/dist/src/cli/nats-config.js" --out "$NATS_AUTH" ||
    die "nats-config could not write $NATS_AUTH"
  local variable
  (umask 077 && touch "$NATS_PASSWORDS")
  for variable in $(sed -n 's/^ *password: \$//p' "$NATS_AUTH"); do
    grep -q "^$variable=" "$NATS_PASSWORDS" ||
      echo "$variable=p$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >>"$NATS_PASSWORDS"
  done
}

# nats_password USER: the password of a NATS user (its variable follows the user in nats-auth.conf).
nats_password() {
  local variable
  variable="$(awk -v user="user: \"$1\"" '$0 ~ user {getline; sub(/^ *password: \$/, ""); print; exit}' "$NATS_AUTH")"
  [ -n "$variable" ] || die "no NATS user $1 in $NATS_AUTH"
  sed -n "s/^$variable=//p" "$NATS_PASSWORDS"
}

# start_nats NAME: a nats-server of the cluster, with the NATS users' passwords in its environment only.
start_nats() {
  local line
  while IFS= read -r line; do local -x "$line"; done <"$NATS_PASSWORDS"
  start "$1" nats-server -c "$NATS_AUTH" -js -n "switchboard-local-$1" -a 127.0.0.1 -p "$(nats_port "$1")" \
    -m "$(nats_monitor_port "$1")" -sd "$RUN_DIR/$1-store" \
    --cluster_name switchboard-local --cluster "nats://127.0.0.1:$(nats_route_port "$1")" \
    --routes "$NATS_ROUTES"
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found; run: scripts/ensure-packages.sh $2"; }

up() {
  need nats-server nats-server
  need haproxy haproxy
  need curl curl
  need openssl openssl
  [ -f "$ROOT/services/gateway/dist/src/main.js" ] || die "gateway not built; run: make build"
  STARTED=()

  # Refuse early, with a clear message, when another program holds a port.
  local port name
  for name in "${NATS_NODES[@]}" haproxy "${GATEWAYS[@]}"; do
    if pid_of "$name" >/dev/null; then continue; fi
    for port in $(ports_of "$name"); do
      if port_busy "$port"; then die "port $port (for $name) is in use by another process"; fi
    done
  done

  # HAProxy's certificate for wss:// (made once; its output says how to trust the CA).
  mkdir -p "$RUN_DIR"
  "$ROOT/scripts/dev-cert.sh" "$TLS_DIR" 2>"$RUN_DIR/dev-cert.log" || die "scripts/dev-cert.sh failed: $(<"$RUN_DIR/dev-cert.log")"

  nats_users
  # Three JetStream servers clustered over routes: history and KV get three replicas, so
  # any one of them may die or restart (SWITCHBOARD_NATS_REPLICAS picks 3 from the URLs).
  for name in "${NATS_NODES[@]}"; do
    mkdir -p "$RUN_DIR/$name-store"
    start_nats "$name"
  done
  for name in "${NATS_NODES[@]}"; do
    wait_for "$name (http://127.0.0.1:$(nats_monitor_port "$name")/healthz)" nats_ready "$name"
  done

  local gateway_password
  gateway_password="$(nats_password gateway)"
  for name in "${GATEWAYS[@]}"; do
    SWITCHBOARD_NODE_ID="$name" \
      SWITCHBOARD_HOST=127.0.0.1 \
      SWITCHBOARD_CLIENT_PORT="$(client_port "$name")" \
      SWITCHBOARD_INTERNAL_PORT="$(internal_port "$name")" \
      SWITCHBOARD_GRPC_PORT="$(grpc_port "$name")" \
      SWITCHBOARD_BROKER="$BROKER" \
      SWITCHBOARD_NATS_URL="$NATS_URL" \
      SWITCHBOARD_NATS_USER=gateway \
      SWITCHBOARD_NATS_PASSWORD="$gateway_password" \
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY="$SECRET" \
      SWITCHBOARD_API_KEY="$API_KEY" \
      SWITCHBOARD_DEMO="$DEMO" \
      SWITCHBOARD_PUSHER_APPS="$PUSHER_APPS" \
      SWITCHBOARD_ALLOWED_ORIGINS="${SWITCHBOARD_ALLOWED_ORIGINS:-$ORIGINS}" \
      SWITCHBOARD_TRUSTED_PROXIES="${SWITCHBOARD_TRUSTED_PROXIES:-127.0.0.1}" \
      start "$name" "$NODE" --max-semi-space-size=4 services/gateway/dist/src/main.js
  done
  for name in "${GATEWAYS[@]}"; do
    wait_for "$name (http://127.0.0.1:$(internal_port "$name")/readyz)" gateway_ready "$name"
  done

  local entry user password
  for entry in "${SERVICES[@]}"; do
    user="$(service_user "${entry%%|*}")"
    password="$(nats_password "$user")"
    # shellcheck disable=SC2086 # the command line is split on purpose
    SWITCHBOARD_NATS_URL="$NATS_URL" SWITCHBOARD_NATS_USER="$user" SWITCHBOARD_NATS_PASSWORD="$password" \
      start "${entry%%|*}" ${entry#*|}
  done

  # The variables docker/haproxy.cfg reads (exported: nothing else starts after HAProxy).
  export SWITCHBOARD_HAPROXY_BIND="*:$HAPROXY_PORT"
  export SWITCHBOARD_HAPROXY_STATS_BIND="*:$HAPROXY_STATS_PORT"
  export SWITCHBOARD_HAPROXY_TLS_BIND="*:$HAPROXY_TLS_PORT"
  export SWITCHBOARD_HAPROXY_TLS_CERT="$TLS_DIR/haproxy/"
  for name in "${GATEWAYS[@]}"; do
    export "SWITCHBOARD_GW${name#gw}_ADDR=127.0.0.1:$(client_port "$name")"
    export "SWITCHBOARD_GW${name#gw}_CHECK_PORT=$(internal_port "$name")"
  done
  haproxy -c -q -f "$ROOT/docker/haproxy.cfg" || fail_up "docker/haproxy.cfg does not validate" "${STARTED[@]}"
  # -db: stay in the foreground (we keep the pid), log to stdout; -W: master-worker, so that
  # SIGHUP reloads the config and certificates without dropping connections.
  start haproxy haproxy -W -db -f "$ROOT/docker/haproxy.cfg"
  wait_for "HAProxy with ${#GATEWAYS[@]} gateways up (http://127.0.0.1:$HAPROXY_STATS_PORT/metrics)" haproxy_ready

  cat <<EOF
Switchboard cluster (broker: $BROKER) is up:
  demo page:     http://localhost:$HAPROXY_PORT/ and https://localhost:$HAPROXY_TLS_PORT/  (SWITCHBOARD_DEMO=$DEMO; development only)
  clients:       ws://localhost:$HAPROXY_PORT/connection/websocket  (HAProxy, leastconn over ${GATEWAYS[*]})
                 wss://localhost:$HAPROXY_TLS_PORT/connection/websocket  (certificate $TLS_DIR/haproxy/localhost.pem)
  trust the development CA $TLS_DIR/ca.pem for wss:// and https://:
$(sed -n 's/^  /                 /p' "$RUN_DIR/dev-cert.log")
  tokens:        HS256 with SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=$SECRET  (make token USER=42)
  server API:    POST http://localhost:$(internal_port gw1)/api/<method> with X-API-Key: $API_KEY
                 (each gateway: ports $(internal_port gw1)..$(internal_port "${GATEWAYS[-1]}"), also /metrics /healthz /readyz)
  gRPC API:      localhost:$(grpc_port gw1)..$(grpc_port "${GATEWAYS[-1]}")
  NATS:          $NATS_URL  (a JetStream cluster; monitoring http://localhost:$(nats_monitor_port nats1)..$(nats_monitor_port "${NATS_NODES[-1]}"))
                 users and permissions $NATS_AUTH, passwords $NATS_PASSWORDS
  HAProxy stats: http://localhost:$HAPROXY_STATS_PORT/stats  (Prometheus: /metrics)
  logs:          $RUN_DIR/*.log
Stop it with: make cluster-down  (or scripts/cluster.sh down)
EOF
}

# stop NAME: SIGTERM, wait up to GRACE seconds, then SIGKILL; removes the pid file.
stop() {
  local name="$1" pid deadline
  if pid="$(pid_of "$name")"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + GRACE))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) still runs after ${GRACE}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.cmd"
}

down() {
  local entry name
  # Services and HAProxy first, then the gateways (they drain their clients and
  # their NATS connection), NATS last. Processes of one group stop in parallel.
  for entry in "${SERVICES[@]}"; do stop "${entry%%|*}" & done
  stop haproxy &
  wait
  for name in "${GATEWAYS[@]}"; do stop "$name" & done
  wait
  for name in "${NATS_NODES[@]}"; do stop "$name" & done
  wait
}

status() {
  local name entry pid running=0 total=0
  local -a names=("${NATS_NODES[@]}" "${GATEWAYS[@]}")
  for entry in "${SERVICES[@]}"; do names+=("${entry%%|*}"); done
  names+=(haproxy)
  for name in "${names[@]}"; do
    total=$((total + 1))
    if pid="$(pid_of "$name")"; then
      running=$((running + 1))
      printf '%-10s running  pid %-8s log %s\n' "$name" "$pid" "$RUN_DIR/$name.log"
    else
      printf '%-10s stopped\n' "$name"
    fi
  done
  echo "$running of $total processes run"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 64
    ;;
esac
