#!/usr/bin/env bash
# Snapshot timings on this disk: a stack with ~100 MiB of PostgreSQL data, 100k messages in
# EVENTS and 1,000 S3 objects; `snapshot save`, `snapshot restore` and `cp -a` of the same
# service directories (with and without a final `sync`, since save and restore flush the file
# system before they report success), and `reset` of a fresh stack.
#
# usage: bench/snapshots.sh [RUNS]        (default 3; median of RUNS runs each)
# Uses the release build (built first), or the binary OPSBOX_BIN names. Needs psql and aws
# (tests/prereqs.sh puts aws on PATH). Prints a markdown table for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
target_dir=${CARGO_TARGET_DIR:-target}
if [[ -n "${OPSBOX_BIN:-}" ]]; then
    opsbox=$(realpath "$OPSBOX_BIN")
else
    cargo build --release --bin opsbox >&2
    opsbox=$(cd "$target_dir/release" && pwd)/opsbox
fi
for tool in psql aws python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is not on PATH" >&2; exit 1; }
done

work=$(mktemp -d)
chmod 0755 "$work" # PostgreSQL's account must traverse it when run as root
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports() {
    echo --nats-port "$(free_port)" --nats-monitor-port "$(free_port)" \
        --postgres-port "$(free_port)" --s3-port "$(free_port)" --services nats,postgres,s3
}
cleanup() {
    set +e
    for dir in "$work"/data-*; do
        [[ -d "$dir" ]] && "$opsbox" --quiet --data-dir "$dir" down >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

ms() { # run "$@" and print its wall time in ms
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The loaded stack.
data="$work/data-loaded"
read -r -a args <<<"$(ports)"
"$opsbox" --quiet --data-dir "$data" up -d "${args[@]}" >&2
pg_port=${args[5]}
nats_port=${args[1]}
monitor_port=${args[3]}
s3_port=${args[7]}
echo "bench: filling PostgreSQL (~100 MiB)" >&2
PGPASSWORD=postgres psql -q -h 127.0.0.1 -p "$pg_port" -U postgres historian -c \
    "CREATE TABLE bench AS SELECT i, md5(i::text) || repeat('x', 100) AS body FROM generate_series(1, 600000) AS i;" >&2
echo "bench: publishing 100,000 messages to EVENTS" >&2
python3 - "$nats_port" "$monitor_port" <<'PY'
import json, socket, sys, time, urllib.request
port, monitor = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.recv(4096)
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
payload = b"x" * 128
batch = b"".join(b"PUB enterprise.bench.%d %d\r\n%s\r\n" % (i % 10, len(payload), payload) for i in range(1000))
for _ in range(100):
    s.sendall(batch)
s.sendall(b"PING\r\n")
buffer = b""
while b"PONG" not in buffer:
    buffer += s.recv(4096)
deadline = time.time() + 120
while time.time() < deadline:
    info = json.load(urllib.request.urlopen(f"http://127.0.0.1:{monitor}/jsz?streams=true"))
    streams = [st for a in info.get("account_details", []) for st in a.get("stream_detail", [])]
    count = sum(st["state"]["messages"] for st in streams if st["name"] == "EVENTS")
    if count >= 100000:
        break
    time.sleep(0.2)
else:
    sys.exit(f"EVENTS holds {count} messages, not 100000, after 120 s")
PY
echo "bench: putting 1,000 objects" >&2
mkdir -p "$work/objects"
for i in $(seq 1 1000); do head -c 4096 /dev/urandom >"$work/objects/object-$i"; done
AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin AWS_DEFAULT_REGION=us-east-1 \
    aws --endpoint-url "http://127.0.0.1:$s3_port" s3 cp --recursive --quiet "$work/objects" s3://historian/bench/ >&2
"$opsbox" --quiet --data-dir "$data" down >&2
sync

size=$(du -sh --apparent-size "$data/nats/jetstream" "$data/postgres/data" "$data/s3" | awk '{printf "%s %s; ", $1, $2}')
echo "bench: data: $size" >&2

copy() { mkdir "$work/copy" && cp -a "$data/nats" "$data/postgres" "$data/s3" "$work/copy/"; }
copy_sync() { copy && sync; }
save() { "$opsbox" --quiet --data-dir "$data" snapshot save bench; }
restore() { "$opsbox" --quiet --data-dir "$data" snapshot restore bench; }
declare -a t_cp t_cps t_save t_restore t_reset
for _ in $(seq "$runs"); do
    t_cp+=("$(ms copy)"); rm -rf "$work/copy"; sync
    t_cps+=("$(ms copy_sync)"); rm -rf "$work/copy"; sync
    t_save+=("$(ms save)"); sync
    t_restore+=("$(ms restore)")
    "$opsbox" --quiet --data-dir "$data" snapshot rm bench; sync
done

# reset of a fresh stack: between two test runs (the stack ran long enough for `up` to build
# the spare of `initial` in the background, so reset is a rename), and back to back (no spare:
# a copy of `initial`).
fresh="$work/data-fresh"
wait_spare() {
    for _ in $(seq 200); do
        [[ -d "$fresh/snapshots/.spare-initial" ]] && return
        sleep 0.05
    done
    echo "bench: no spare of initial after 10 s" >&2
}
declare -a t_reset_copy
for _ in $(seq "$runs"); do
    read -r -a args <<<"$(ports)"
    "$opsbox" --quiet --data-dir "$fresh" up -d "${args[@]}" >&2
    wait_spare
    "$opsbox" --quiet --data-dir "$fresh" down >&2
    sync
    t_reset+=("$(ms "$opsbox" --quiet --data-dir "$fresh" reset)")
    t_reset_copy+=("$(ms "$opsbox" --quiet --data-dir "$fresh" reset)")
done

# The same on running stacks: the loaded one (save and restore) and the fresh one (reset).
# Each prints JSON with `paused_ms`, how long the supervisor held the stack's clients.
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
timed_json() { # run "$@", print "<wall ms> <paused ms>"
    local start end out
    start=$(date +%s%N)
    out=$("$@" 2>/dev/null)
    end=$(date +%s%N)
    echo "$(((end - start) / 1000000)) $(json_field paused_ms <<<"$out")"
}
# A NATS client that round-trips PING/PONG without pause while a save runs: the longest gap
# it sees is the pause a client of the running stack feels.
nats_probe() { # port seconds
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.recv(4096)
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
worst, end = 0.0, time.time() + seconds
while time.time() < end:
    began = time.time()
    s.sendall(b"PING\r\n")
    buffer = b""
    while b"PONG" not in buffer:
        buffer += s.recv(4096)
    worst = max(worst, time.time() - began)
    time.sleep(0.001)
print(int(worst * 1000))
PY
}
read -r -a args <<<"$(ports)"
"$opsbox" --quiet --data-dir "$data" up -d "${args[@]}" >&2
run_port=${args[1]}
declare -a t_rsave p_rsave t_rrestore p_rrestore t_rreset p_rreset t_probe
for _ in $(seq "$runs"); do
    nats_probe "$run_port" 6 >"$work/probe" &
    probe=$!
    sleep 1
    read -r t p <<<"$(timed_json "$opsbox" --data-dir "$data" snapshot save running --json)"
    t_rsave+=("$t"); p_rsave+=("$p")
    wait "$probe"
    t_probe+=("$(cat "$work/probe")")
    read -r t p <<<"$(timed_json "$opsbox" --data-dir "$data" snapshot restore running --json)"
    t_rrestore+=("$t"); p_rrestore+=("$p")
    "$opsbox" --quiet --data-dir "$data" snapshot rm running; sync
done
"$opsbox" --quiet --data-dir "$data" down >&2
read -r -a args <<<"$(ports)"
"$opsbox" --quiet --data-dir "$fresh" up -d "${args[@]}" >&2
declare -a t_rreset_copy p_rreset_copy
for _ in $(seq "$runs"); do
    wait_spare
    read -r t p <<<"$(timed_json "$opsbox" --data-dir "$fresh" reset --json)"
    t_rreset+=("$t"); p_rreset+=("$p")
    read -r t p <<<"$(timed_json "$opsbox" --data-dir "$fresh" reset --json)"
    t_rreset_copy+=("$t"); p_rreset_copy+=("$p")
done
"$opsbox" --quiet --data-dir "$fresh" down >&2

m_cp=$(printf '%s\n' "${t_cp[@]}" | median)
m_cps=$(printf '%s\n' "${t_cps[@]}" | median)
m_save=$(printf '%s\n' "${t_save[@]}" | median)
m_restore=$(printf '%s\n' "${t_restore[@]}" | median)
m_reset=$(printf '%s\n' "${t_reset[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "data: $size; median of $runs runs"
echo
echo "| operation | time (ms) | vs cp -a | vs cp -a + sync | target |"
echo "|---|---:|---:|---:|---|"
echo "| cp -a of the three service dirs | $m_cp | 1.00 | | |"
echo "| cp -a + sync | $m_cps | | 1.00 | |"
echo "| snapshot save | $m_save | $(ratio "$m_save" "$m_cp") | $(ratio "$m_save" "$m_cps") | ≤ 1.5× cp -a |"
echo "| snapshot restore | $m_restore | $(ratio "$m_restore" "$m_cp") | $(ratio "$m_restore" "$m_cps") | ≤ 1.5× cp -a |"
echo "| reset (fresh stack; spare of initial ready) | $m_reset | | | ≤ 500 ms |"
echo "| reset (fresh stack; back to back, no spare) | $(printf '%s\n' "${t_reset_copy[@]}" | median) | | | ≤ 500 ms |"
med() { printf '%s\n' "$@" | median; }
echo
echo "Running stacks (the stack stays up; \"clients held\" is the supervisor's own measure, from"
echo "closing the S3 gate to letting everything go; the probe is the longest NATS PING round trip"
echo "a client saw during the save):"
echo
echo "| operation on a running stack | time (ms) | clients held (ms) |"
echo "|---|---:|---:|"
echo "| snapshot save | $(med "${t_rsave[@]}") | $(med "${p_rsave[@]}") (probe: $(med "${t_probe[@]}")) |"
echo "| snapshot restore | $(med "${t_rrestore[@]}") | $(med "${p_rrestore[@]}") |"
echo "| reset (fresh stack; spare ready) | $(med "${t_rreset[@]}") | $(med "${p_rreset[@]}") |"
echo "| reset (fresh stack; back to back, no spare) | $(med "${t_rreset_copy[@]}") | $(med "${p_rreset_copy[@]}") |"
