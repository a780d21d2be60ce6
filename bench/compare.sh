#!/usr/bin/env bash
# Roost vs Prosody, side by side, with the same load generator (`roost bench`), on loopback.
#
# Installs Prosody from Debian if missing, starts both servers on 127.0.0.1 with the same
# settings (domain localhost, same TLS mode, SCRAM-SHA-1 with 10000 iterations, no archive,
# no per-IP limits), provisions identical accounts and rosters, runs the scenarios against
# each, stops what it started and prints a table with Roost/Prosody ratios.
#
#   bench/compare.sh [--users N] [--contacts M] [--tls starttls|none] [--rates R1,R2,...]
#                    [--step-seconds S] [--procs P] [--presence-rate R] [--out DIR]
#                    [--scenario all|muc] [--muc-users N] [--muc-rates R1,R2,...]
#                    [--muc-step-seconds S] [--muc-seconds S]
#
# --scenario muc runs only the group-chat scenario (issue 13): N occupants (default 200) of
# one room at conference.localhost, first at the stepped per-occupant rates (--muc-rates,
# --muc-step-seconds each), then at 1 message/s per occupant for --muc-seconds (default 60).
# Both servers' MUC limits are raised out of the way (occupants per room, messages per
# occupant), so it measures fan-out, not a rate limiter.
#
# Everything stays on 127.0.0.1; every run is bounded in time.
set -euo pipefail

USERS=2000
CONTACTS=10
TLS=starttls
RATES=2000,4000,6000,8000,10000,12000
STEP=5
PROCS=1
PRESENCE_RATE=1000
OUT=""
SCENARIO=all
MUC_USERS=200
MUC_RATES=0.05,0.1,0.25,0.5,1
MUC_STEP=10
MUC_SECONDS=60
while [ $# -gt 0 ]; do
  case "$1" in
    --users) USERS=$2; shift 2 ;;
    --contacts) CONTACTS=$2; shift 2 ;;
    --tls) TLS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --step-seconds) STEP=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --presence-rate) PRESENCE_RATE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --muc-users) MUC_USERS=$2; shift 2 ;;
    --muc-rates) MUC_RATES=$2; shift 2 ;;
    --muc-step-seconds) MUC_STEP=$2; shift 2 ;;
    --muc-seconds) MUC_SECONDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$SCENARIO" in all|muc) ;; *) echo "--scenario is all or muc" >&2; exit 2 ;; esac
if [ "$SCENARIO" = muc ]; then
  USERS=$MUC_USERS
  CONTACTS=0  # occupants need no roster; presence comes from the room
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
make -s .venv/.installed
PY="$ROOT/.venv/bin/python"
ROOST="$ROOT/.venv/bin/roost"

if ! command -v prosody >/dev/null 2>&1; then
  echo "installing prosody from Debian..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null
fi
PROSODY_VERSION=$(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo unknown)

WORK=$(mktemp -d /tmp/roost-compare.XXXXXX)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ROOST_PORT=$(free_port)
PROSODY_PORT=$(free_port)
REQUIRE=$([ "$TLS" = none ] && echo false || echo true)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# -- Roost ----------------------------------------------------------------------------------
cat > "$WORK/roost.toml" <<EOF
domains = ["localhost"]
data_dir = "roost-data"
[c2s]
port = $ROOST_PORT
direct_tls_port = 0
interfaces = ["127.0.0.1"]
require_encryption = $REQUIRE
max_connections_per_ip = 1000000
max_auth_failures_per_ip = 1000000
idle_timeout = 0
ping_interval = 0
[auth]
scram_iterations = 10000
[s2s]
enabled = false  # as Prosody's below: client traffic only
[modules]
disabled = ["mam"]  # no archive, as Prosody's below (its cost: bench/README.md, issue 12)
[modules.muc]
# Out of the way of the muc scenario: it measures fan-out, not the per-occupant rate
# limiter (default 5/s, burst 20) or the room size limit (default 200).
max_occupants = 100000
message_rate = 100000
message_burst = 100000
[log]
level = "warning"
EOF
"$ROOST" bench provision --config "$WORK/roost.toml" --users "$USERS" --contacts "$CONTACTS" >&2
"$ROOST" cert generate localhost --config "$WORK/roost.toml" >/dev/null

# -- Prosody ---------------------------------------------------------------------------------
mkdir -p "$WORK/prosody-data"
"$PY" bench/prosody_provision.py "$WORK/prosody-data" --users "$USERS" --contacts "$CONTACTS" >&2
cat > "$WORK/prosody.cfg.lua" <<EOF
daemonize = false
run_as_root = true
pidfile = "$WORK/prosody.pid"
data_path = "$WORK/prosody-data"
log = { error = "$WORK/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { $PROSODY_PORT }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }
modules_disabled = { "s2s"; "offline" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = $REQUIRE
VirtualHost "localhost"
  ssl = { certificate = "$WORK/roost-data/certs/localhost.crt"; key = "$WORK/roost-data/certs/localhost.key" }
-- Prosody 0.12's mod_muc has no occupant or message-rate limit of its own (mod_muc_limits,
-- which adds one, is a community module and not loaded); rooms are not persistent and keep
-- 20 messages of history by default, which the joiners decline (maxstanzas 0).
Component "conference.localhost" "muc"
  modules_enabled = { }
EOF

wait_port() {
  for _ in $(seq 1 100); do
    "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2; return 1
}

start_roost() {
  (cd "$WORK" && exec "$ROOST" serve --config roost.toml) 2>"$WORK/roost.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$ROOST_PORT"
}
start_prosody() {
  prosody --config "$WORK/prosody.cfg.lua" >"$WORK/prosody.out" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$PROSODY_PORT"
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

run_scenarios() {  # NAME PORT START_FUNCTION
  local name=$1 port=$2 start=$3
  local common=(--server "127.0.0.1:$port" --domain localhost --tls "$TLS" --insecure
                --mechanisms SCRAM-SHA-1 --procs "$PROCS" --quiet)
  # idle first, on a fresh server: memory freed by earlier sessions stays in the process and
  # would hide what new sessions cost.
  "$start"
  echo "== $name: idle" >&2
  "$ROOST" bench idle "${common[@]}" --server-pid "$SERVER_PID" --users "$USERS" --duration 5 \
    --json "$OUT/$name-idle.json" >&2
  common+=(--server-pid "$SERVER_PID")
  echo "== $name: login" >&2
  "$ROOST" bench login "${common[@]}" --users "$USERS" --json "$OUT/$name-login.json" >&2
  echo "== $name: messages" >&2
  "$ROOST" bench messages "${common[@]}" --users "$USERS" --rates "$RATES" \
    --step-seconds "$STEP" --json "$OUT/$name-messages.json" >&2
  echo "== $name: presence" >&2
  "$ROOST" bench presence "${common[@]}" --users "$USERS" --contacts "$CONTACTS" \
    --rate "$PRESENCE_RATE" --duration 5 --json "$OUT/$name-presence.json" >&2
  stop_server
}

run_muc() {  # NAME PORT START_FUNCTION
  local name=$1 port=$2 start=$3
  local common=(--server "127.0.0.1:$port" --domain localhost --tls "$TLS" --insecure
                --mechanisms SCRAM-SHA-1 --procs "$PROCS" --quiet --users "$USERS")
  "$start"
  echo "== $name: muc, stepped rates $MUC_RATES per occupant" >&2
  "$ROOST" bench muc "${common[@]}" --server-pid "$SERVER_PID" --rates "$MUC_RATES" \
    --step-seconds "$MUC_STEP" --json "$OUT/$name-muc-steps.json" >&2
  # A fresh server for the minute: one that fell behind in the last steps would still be
  # working off their backlog (and refusing logins) when the next run starts.
  stop_server
  "$start"
  echo "== $name: muc, 1/s per occupant for $MUC_SECONDS s" >&2
  "$ROOST" bench muc "${common[@]}" --server-pid "$SERVER_PID" --rates 1 \
    --step-seconds "$MUC_SECONDS" --json "$OUT/$name-muc.json" >&2
  stop_server
}

if [ "$SCENARIO" = muc ]; then
  run_muc roost "$ROOST_PORT" start_roost
  run_muc prosody "$PROSODY_PORT" start_prosody
  "$PY" bench/compare_table.py "$OUT" --muc --tls "$TLS" --users "$USERS" \
    --prosody-version "$PROSODY_VERSION"
  echo "raw results: $OUT" >&2
  exit 0
fi

run_scenarios roost "$ROOST_PORT" start_roost
run_scenarios prosody "$PROSODY_PORT" start_prosody

"$PY" bench/compare_table.py "$OUT" --tls "$TLS" --users "$USERS" --contacts "$CONTACTS" \
  --prosody-version "$PROSODY_VERSION"
echo "raw results: $OUT" >&2
