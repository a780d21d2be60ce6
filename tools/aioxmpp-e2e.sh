#!/usr/bin/env bash
# Run aioxmpp's own end-to-end test suite against a fresh Roost on loopback.
#
#   tools/aioxmpp-e2e.sh /path/to/aioxmpp-checkout [pytest args...]
#
# aioxmpp's e2e tests (tests/**/test_e2e.py) are in its git repository, not in its PyPI
# release, so this is not part of `make test`: give it a checkout (github.com/horazont/
# aioxmpp or codeberg.org/jssfr/aioxmpp). Roost has no SASL ANONYMOUS, so the suite runs
# with aioxmpp's StaticPasswordProvisioner over pre-made accounts; that provisioner hands
# the same accounts to every test in turn, so a test that expects a fresh account finds
# nodes an earlier test left (see README, "Other projects' test suites").
set -euo pipefail
CHECKOUT=$(cd "${1:?usage: $0 AIOXMPP_CHECKOUT [pytest args]}" && pwd)
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
make -s -C "$ROOT" .venv/.installed
ROOST="$ROOT/.venv/bin/roost"
WORK=$(mktemp -d /tmp/roost-aioxmpp-e2e.XXXXXX)
PORT=$("$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
USERS=200
cat > "$WORK/roost.toml" <<TOML
domains = ["localhost"]
data_dir = "$WORK/data"
[c2s]
port = $PORT
direct_tls_port = 0
interfaces = ["127.0.0.1"]
max_connections_per_ip = 100000
[s2s]
enabled = false
[modules.pubsub]
enabled = true
TOML
"$ROOST" bench provision --config "$WORK/roost.toml" --users "$USERS" --contacts 0 \
  --prefix e2e --password e2e-password >/dev/null
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q -e "$CHECKOUT" pytest pytz
mkdir -p "$WORK/cfg"
"$WORK/venv/bin/python" - "$WORK/cfg/e2etest.ini" "$PORT" "$USERS" <<'PY'
import sys
path, port, users = sys.argv[1], sys.argv[2], int(sys.argv[3])
accounts = [(f"e2e{i}", "e2e-password") for i in range(users)]
open(path, "w").write(
    "[global]\nprovisioner=aioxmpp.e2etest.provision.StaticPasswordProvisioner\n\n"
    "[aioxmpp.e2etest.provision.StaticPasswordProvisioner]\n"
    f"host=127.0.0.1\ndomain=localhost\nport={port}\nno_verify=true\n"
    f"accounts={accounts!r}\nskip_on_too_few_accounts=true\n"
)
PY
"$ROOST" serve --config "$WORK/roost.toml" 2>"$WORK/roost.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$ROOT/.venv/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2).close()" 2>/dev/null && break
  sleep 0.1
done
cd "$CHECKOUT"
"$WORK/venv/bin/python" -m pytest -p aioxmpp.e2etest --e2etest-config="$WORK/cfg/e2etest.ini" \
  -p no:cacheprovider -q -rs "$@" tests/test_e2e.py tests/*/test_e2e.py
