#!/usr/bin/env bash
# Many instances on one host (issue 14): a cold `opsbox up -d` (fresh data dir, warm caches:
# binaries and the PostgreSQL cluster template) against initdb + start + createdb by hand in the
# same run; a warm `up -d` while seven other instances run; eight instances started at once
# (time until all eight are ready, and their total RSS).
#
# usage: bench/instances.sh [RUNS]        (default 7; median of RUNS runs each)
# Uses the release build (built first), or the binary OPSBOX_BIN names. Every instance gets its
# own --data-dir and its own ports through the per-service port flags. Prints a markdown table
# for docs/performance.md. Run as root (like CI): PostgreSQL then runs as the `postgres` account.
set -euo pipefail
runs=${1:-7}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
createdb=$(client_tool createdb)

work=$(mktemp -d)
chmod 0755 "$work" # the postgres account must traverse it
cleanup() {
    set +e
    for dir in "$work"/opsbox-*; do
        [[ -d "$dir" ]] && "$opsbox" --quiet --data-dir "$dir" down >/dev/null 2>&1
    done
    for dir in "$work"/pg-*; do
        [[ -f "$dir/postmaster.pid" ]] && runuser -u "$pg_user" -- "$pg_bin/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT
export PGPASSWORD=postgres
mkdir -m 0700 "$work/pglog" && chown "$pg_user:" "$work/pglog"
echo postgres >"$work/pwfile"
chmod 0644 "$work/pwfile"

# Five free loopback ports, as opsbox's port flags.
port_flags() {
    python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
flags = ["--nats-port", "--nats-monitor-port", "--postgres-port", "--s3-port", "--console-port"]
print(" ".join(f"{f} {s.getsockname()[1]}" for f, s in zip(flags, socks)))
EOF
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)), a[1] "–" a[NR]}'; }
as_pg() { runuser -u "$pg_user" -- "$@"; }
up() { "$opsbox" --quiet --data-dir "$1" up -d $2; }
down() { "$opsbox" --quiet --data-dir "$1" down "${@:2}" >/dev/null 2>&1 || true; }
# Resident memory (KiB) of a supervisor and every process below it.
tree_rss_kib() {
    python3 - "$1" <<'EOF'
import os, sys
children = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(pid))
    except OSError:
        pass
total, stack = 0, [int(sys.argv[1])]
while stack:
    pid = stack.pop()
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    except OSError:
        pass
    stack.extend(children.get(pid, []))
print(total)
EOF
}
supervisor_pid() {
    "$opsbox" --data-dir "$1" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["supervisor_pid"])'
}

# Warm the caches: binaries and the cluster template (one instance initialised, then removed).
up "$work/opsbox-warmup" "$(port_flags)"
down "$work/opsbox-warmup" -v

# --- cold up -d against initdb + start + createdb by hand, alternating ----------------------
cold_times=()
hand_times=()
echo "bench: cold up -d / initdb + start + createdb by hand (alternating, $runs runs)" >&2
for i in $(seq "$runs"); do
    cold="$work/opsbox-cold-$i"
    flags=$(port_flags)
    start=$(now_ms)
    up "$cold" "$flags"
    cold_times+=($(($(now_ms) - start)))
    down "$cold" -v

    fresh="$work/pg-fresh-$i"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    start=$(now_ms)
    mkdir -m 0700 "$fresh" && chown "$pg_user:" "$fresh"
    as_pg "$pg_bin/initdb" -D "$fresh" -U postgres --pwfile="$work/pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C >/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$fresh" -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=" \
        -l "$work/pglog/pg.log" start -w >/dev/null
    "$createdb" -h 127.0.0.1 -p "$port" -U postgres historian
    hand_times+=($(($(now_ms) - start)))
    as_pg "$pg_bin/pg_ctl" -D "$fresh" stop -m fast >/dev/null
    rm -rf "$fresh"
done
read -r cold_median cold_range < <(stats "${cold_times[@]}")
read -r hand_median hand_range < <(stats "${hand_times[@]}")

# --- warm up -d while seven other instances run ----------------------------------------------
echo "bench: warm up -d with seven other instances running ($runs runs)" >&2
for i in $(seq 7); do up "$work/opsbox-other-$i" "$(port_flags)"; done
warm="$work/opsbox-warm"
up "$warm" "$(port_flags)"
down "$warm"
warm_times=()
for _ in $(seq "$runs"); do
    flags=$(port_flags)
    start=$(now_ms)
    up "$warm" "$flags"
    warm_times+=($(($(now_ms) - start)))
    down "$warm"
done
read -r warm_median warm_range < <(stats "${warm_times[@]}")
for i in $(seq 7); do down "$work/opsbox-other-$i" -v; done

# --- eight at once ----------------------------------------------------------------------------
echo "bench: eight fresh instances started at once ($runs runs)" >&2
eight_times=()
eight_rss=()
for r in $(seq "$runs"); do
    flags=()
    for i in $(seq 8); do flags+=("$(port_flags)"); done
    start=$(now_ms)
    for i in $(seq 8); do up "$work/opsbox-eight-$r-$i" "${flags[$((i - 1))]}" & done
    wait
    eight_times+=($(($(now_ms) - start)))
    total=0
    for i in $(seq 8); do
        total=$((total + $(tree_rss_kib "$(supervisor_pid "$work/opsbox-eight-$r-$i")")))
    done
    eight_rss+=($((total / 1024)))
    for i in $(seq 8); do down "$work/opsbox-eight-$r-$i" -v & done
    wait
done
read -r eight_median eight_range < <(stats "${eight_times[@]}")
read -r rss_median rss_range < <(stats "${eight_rss[@]}")

# --- report -----------------------------------------------------------------------------------
verdict() { if (($1)); then echo met; else echo "**missed**"; fi; }
half=$((hand_median / 2))
echo "| measurement ($(nproc) CPUs, $runs runs) | median | min–max | target |"
echo "|---|---|---|---|"
echo "| \`opsbox up -d\`, cold (fresh data dir, warm caches) | ${cold_median} ms | ${cold_range} ms | ≤ 300 ms: $(verdict "cold_median <= 300"); ≤ 0.5 × by hand = ${half} ms: $(verdict "cold_median <= half") |"
echo "| initdb + start + createdb by hand | ${hand_median} ms | ${hand_range} ms | |"
echo "| \`opsbox up -d\`, warm, seven other instances running | ${warm_median} ms | ${warm_range} ms | ≤ 300 ms: $(verdict "warm_median <= 300") |"
echo "| eight fresh instances at once, until all eight are ready | ${eight_median} ms | ${eight_range} ms | (reported) |"
echo "| total RSS of the eight (supervisors and all their children) | ${rss_median} MiB | ${rss_range} MiB | (reported) |"
