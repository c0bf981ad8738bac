#!/usr/bin/env bash
# Checks a running parley-server against its own OpenAPI document with schemathesis: every
# answer must be documented (status, content type, headers, body schema), no call may answer
# 5xx or drop the connection, undeclared methods must get 405 with `Allow`.
#
# usage: scripts/schemathesis.sh
#   PARLEY_SERVER_BIN       server binary (default: build and use target/debug/parley-server)
#   SCHEMATHESIS_EXAMPLES   examples per operation and phase (default 25)
#   SCHEMATHESIS_MAX_TIME   seconds for the whole run: fuzzing and stateful sequences go on
#                           until it is spent (default 90)
#   SCHEMATHESIS_WORKERS    concurrent workers (default 1: Python 3.11's `ast` is not safe
#                           to use from several threads, which hypothesis does)
#   SCHEMATHESIS_SEED       a seed, to replay a run (default: a new one, printed)
#   SCHEMATHESIS_ARGS       more `st run` arguments
#
# Installs what it needs when missing: python3 and its venv module (apt-get, as root), then
# schemathesis (pinned) into a virtual environment under target/schemathesis-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/schemathesis-venv"

say() { echo "schemathesis.sh: $*" >&2; }
fail() { say "$*"; exit 1; }

# Python 3 with venv and pip.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing python3 and python3-venv with apt-get"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >&2
    else
        fail "python3 with the venv module is needed (apt-get install python3 python3-venv, as root)"
    fi
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
    fail "python3 is $(python3 --version 2>&1); schemathesis needs 3.9 or later"

if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "could not make a virtual environment in $venv"
    "$venv/bin/pip" install --disable-pip-version-check -q "schemathesis==$SCHEMATHESIS_VERSION" ||
        fail "pip could not install schemathesis==$SCHEMATHESIS_VERSION"
fi

server="${PARLEY_SERVER_BIN:-}"
if [ -z "$server" ]; then
    cargo build -q --bin parley-server
    server="$target_dir/debug/parley-server"
fi
[ -x "$server" ] || fail "no server binary at $server"

work="$(mktemp -d "${TMPDIR:-/tmp}/parley-schemathesis.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Relaxed limits, so that generated calls reach the handlers instead of a rate limit. The
# password rules stay the default ones the document describes.
user=st-admin
password="schemathesis password"
"$server" --bind 127.0.0.1:0 --data-dir "$work/data" --fsync never \
    --pbkdf2-iterations 1000 --rest-rate-limit 0 --rate-limit 0 \
    --register-per-ip-per-hour 0 --max-owned-rooms 0 --max-rooms-per-user 1000000 \
    --max-connections-per-ip 0 --login-account-failures 1000000 \
    --admin "$user" --log-level warn \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
addr=""
for _ in $(seq 100); do
    addr="$(sed -n 's/^parley listening on //p' "$work/stdout" | head -n 1)"
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$addr" ] || fail "the server did not start: $(cat "$work/stderr")"
url="http://$addr"
say "server $server on $url"
# The administrator registers with the admin setup code the server logs at WARN.
setup=""
for _ in $(seq 100); do
    setup="$(sed -n 's/.*with the invite code \([A-Za-z0-9_-]*\).*/\1/p' "$work/stderr" | head -n 1)"
    [ -n "$setup" ] && break
    sleep 0.1
done
[ -n "$setup" ] || fail "no admin setup code in the server's log: $(cat "$work/stderr")"

"$venv/bin/python" - "$url" "$user" "$password" "$setup" <<'EOF'
import json, sys, urllib.request
url, user, password, setup = sys.argv[1:]
body = {"username": user, "password": password, "invite_code": setup}
req = urllib.request.Request(url + "/api/v1/register", method="POST",
                             data=json.dumps(body).encode())
with urllib.request.urlopen(req, timeout=30) as r:
    assert r.status == 201, r.status
EOF

# Run from a directory under target: schemathesis keeps a cache of what failed there (and
# tries it first next time).
status=0
mkdir -p "$target_dir/schemathesis"
repo="$(pwd)"
venv="$(cd "$venv" && pwd)"
(cd "$target_dir/schemathesis" &&
PARLEY_URL="$url" PARLEY_USER="$user" PARLEY_PASSWORD="$password" \
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$repo/scripts" \
    "$venv/bin/st" --no-color --config-file "$repo/scripts/schemathesis.toml" run "$url/api/v1/openapi.json" \
    --checks all \
    --exclude-checks positive_data_acceptance,ensure_resource_availability \
    --exclude-path /api/v1/ws \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --max-time "${SCHEMATHESIS_MAX_TIME:-90}" \
    ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
    --workers "${SCHEMATHESIS_WORKERS:-1}" \
    --request-timeout 30 \
    ${SCHEMATHESIS_ARGS:-}) || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
    say "the server died during the run"
    cat "$work/stderr" >&2
    status=1
elif grep -q "panicked" "$work/stderr"; then
    say "the server panicked during the run"
    cat "$work/stderr" >&2
    status=1
fi
exit "$status"
