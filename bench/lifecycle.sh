#!/usr/bin/env bash
# Lifecycle timings on this machine, in one run: `opsbox up -d` (warm and cold), `opsbox down`,
# the supervisor's idle RSS, and the same components started by hand for comparison.
#
# usage: bench/lifecycle.sh [RUNS]        (default 7; median of RUNS runs each)
# Uses the release build (built first), or the binary OPSBOX_BIN names (to compare commits).
# Binaries come from opsbox's cache (OPSBOX_CACHE_DIR if set), fetched if missing. Every run gets fresh free ports. Prints a markdown table for
# docs/performance.md. Uses hyperfine when installed, else a date +%s%N loop.
# Run as root (like CI): PostgreSQL then runs as the `postgres` account, by hand via runuser.
set -euo pipefail
runs=${1:-7}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
pg_isready=$(client_tool pg_isready)
createdb=$(client_tool createdb)

work=$(mktemp -d)
chmod 0755 "$work" # the postgres account must traverse it
cleanup() {
    set +e
    for dir in "$work"/opsbox-*; do
        [[ -d "$dir" ]] && "$opsbox" --quiet --data-dir "$dir" down >/dev/null 2>&1
    done
    [[ -f "$work/nats.pid" ]] && kill "$(cat "$work/nats.pid")" 2>/dev/null
    for dir in "$work"/pg-*; do
        [[ -f "$dir/postmaster.pid" ]] && runuser -u "$pg_user" -- "$pg_bin/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

export opsbox nats_server pg_bin pg_isready createdb pg_user work repo
export PGPASSWORD=postgres

# Four free ports, fresh for every run, written as shell assignments to $work/ports.
new_ports() {
    python3 - >"$work/ports" <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
names = ["NP", "MP", "PP", "SP"]
for name, s in zip(names, socks):
    print(f"{name}={s.getsockname()[1]}")
EOF
}
# opsbox's port flags for the current ports.
port_flags() {
    . "$work/ports"
    echo "--nats-port $NP --nats-monitor-port $MP --postgres-port $PP --s3-port $SP"
}
# Fork-free probes (bash /dev/tcp), polled every 5 ms like opsbox's, deadline 30 s.
wait_healthz() {
    local port=$1 line
    for _ in $(seq 6000); do
        if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            printf 'GET /healthz?js-enabled-only=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
            line=
            read -r -t 2 line <&3 || true
            exec 3>&-
            [[ "$line" == *" 200 "* ]] && return 0
        fi
        sleep 0.005
    done
    return 1
}
wait_pg_isready() {
    for _ in $(seq 6000); do
        "$pg_isready" -q -h 127.0.0.1 -p "$1" && return 0
        sleep 0.005
    done
    return 1
}
as_pg() { runuser -u "$pg_user" -- "$@"; }
pg_opts() { echo "-p $PP -c listen_addresses=127.0.0.1 -c unix_socket_directories="; }
pg_stop() { [[ -f "$1/postmaster.pid" ]] && as_pg "$pg_bin/pg_ctl" -D "$1" stop -m fast >/dev/null; return 0; }
initdb_by_hand() {
    mkdir -m 0700 "$1" && chown "$pg_user:" "$1"
    as_pg "$pg_bin/initdb" -D "$1" -U postgres --pwfile="$work/pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C >/dev/null
}
nats_kill() {
    if [[ -f "$work/nats.pid" ]]; then
        local pid
        pid=$(cat "$work/nats.pid")
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
        rm -f "$work/nats.pid"
    fi
}
export -f new_ports port_flags wait_healthz wait_pg_isready as_pg pg_opts pg_stop initdb_by_hand nats_kill

mkdir -m 0700 "$work/pglog" && chown "$pg_user:" "$work/pglog" # pg_ctl -l writes as that account
echo postgres >"$work/pwfile"
chmod 0644 "$work/pwfile"
# The nats-server configuration opsbox generates: the project's nats.conf, then a jetstream
# block with its store_dir and sync_interval: always (src/services/nats.rs).
cat >"$work/nats.conf" <<EOF
include "$(realpath --relative-to="$work" "$repo/ops/nats.conf")"
jetstream {
  store_dir: "$work/nats-store"
  sync_interval: always
}
EOF

declare -A median range
# measure KEY PREPARE COMMAND: median wall time in ms of COMMAND, PREPARE before every run.
measure() {
    local key=$1 prepare=$2 command=$3
    echo "bench: $key" >&2
    if command -v hyperfine >/dev/null; then
        hyperfine --shell=bash --style=none --runs "$runs" --prepare "$prepare" \
            --export-json "$work/$key.json" "$command" >&2
        read -r "median[$key]" "range[$key]" < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(round(r["median"]*1000), "%d–%d" % (r["min"]*1000, r["max"]*1000))' "$work/$key.json")
    else
        local times=() start end
        for _ in $(seq "$runs"); do
            bash -c "$prepare"
            start=$(date +%s%N)
            bash -c "$command"
            end=$(date +%s%N)
            times+=($(((end - start) / 1000000)))
        done
        read -r "median[$key]" "range[$key]" < <(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)), a[1] "–" a[NR]}')
    fi
}

# --- opsbox -----------------------------------------------------------------------------------
warm="$work/opsbox-warm"
new_ports
"$opsbox" --quiet --data-dir "$warm" up -d $(port_flags) # initialise once: later runs are warm
"$opsbox" --quiet --data-dir "$warm" down
measure up_warm \
    "\"\$opsbox\" --quiet --data-dir $warm down; new_ports" \
    "\"\$opsbox\" --quiet --data-dir $warm up -d \$(port_flags)"
"$opsbox" --quiet --data-dir "$warm" down


measure down \
    "new_ports; \"\$opsbox\" --quiet --data-dir $warm up -d \$(port_flags)" \
    "\"\$opsbox\" --quiet --data-dir $warm down"

# Idle RSS of the supervisor (includes the in-process S3 server), 2 s after `up -d` returned.
rss=()
for _ in $(seq "$runs"); do
    new_ports
    "$opsbox" --quiet --data-dir "$warm" up -d $(port_flags)
    sleep 2
    pid=$("$opsbox" --data-dir "$warm" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["supervisor_pid"])')
    rss+=($(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"))
    "$opsbox" --quiet --data-dir "$warm" down
done
rss_kib=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
rss_range=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f–%.1f", a[1] / 1024, a[NR] / 1024}')

# --- by hand ----------------------------------------------------------------------------------
measure nats_by_hand \
    "nats_kill; rm -rf \$work/nats-store; new_ports" \
    ". \$work/ports; \"\$nats_server\" -c \$work/nats.conf -a 127.0.0.1 -p \$NP -m \$MP >\$work/nats.log 2>&1 & echo \$! >\$work/nats.pid; wait_healthz \$MP"
nats_kill

pg="$work/pg-hand"
new_ports
initdb_by_hand "$pg"
measure pg_ctl_start \
    "pg_stop $pg; new_ports" \
    ". \$work/ports; as_pg \"\$pg_bin/pg_ctl\" -D $pg -o \"\$(pg_opts)\" -l \$work/pglog/pg.log start -w >/dev/null"
pg_stop "$pg"

measure postgres_direct \
    "pg_stop $pg; new_ports" \
    ". \$work/ports; as_pg \"\$pg_bin/postgres\" -D $pg \$(pg_opts) >>\$work/pglog/pg.log 2>&1 & wait_pg_isready \$PP"
pg_stop "$pg"

measure pg_ctl_stop \
    "new_ports; . \$work/ports; as_pg \"\$pg_bin/pg_ctl\" -D $pg -o \"\$(pg_opts)\" -l \$work/pglog/pg.log start -w >/dev/null" \
    "as_pg \"\$pg_bin/pg_ctl\" -D $pg stop -m fast >/dev/null"

# Cold start against initdb + start + createdb by hand: both are dominated by initdb (CPU) and
# vary with the machine's load, so the runs alternate (opsbox, by hand, opsbox, ...) and both
# see the same conditions.
cold="$work/opsbox-cold"
fresh="$work/pg-fresh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
cold_times=()
hand_times=()
echo "bench: up_cold, initdb_start_createdb (alternating)" >&2
for _ in $(seq "$runs"); do
    "$opsbox" --quiet --data-dir "$cold" down -v >/dev/null 2>&1 || true
    rm -rf "$cold"
    new_ports
    start=$(now_ms)
    "$opsbox" --quiet --data-dir "$cold" up -d $(port_flags)
    cold_times+=($(($(now_ms) - start)))
    "$opsbox" --quiet --data-dir "$cold" down -v >/dev/null

    rm -rf "$fresh"
    new_ports
    . "$work/ports"
    start=$(now_ms)
    initdb_by_hand "$fresh"
    as_pg "$pg_bin/pg_ctl" -D "$fresh" -o "$(pg_opts)" -l "$work/pglog/pg.log" start -w >/dev/null
    "$createdb" -h 127.0.0.1 -p "$PP" -U postgres historian
    hand_times+=($(($(now_ms) - start)))
    pg_stop "$fresh"
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)), a[1] "–" a[NR]}'; }
read -r "median[up_cold]" "range[up_cold]" < <(stats "${cold_times[@]}")
read -r "median[initdb_start_createdb]" "range[initdb_start_createdb]" < <(stats "${hand_times[@]}")

# --- report -----------------------------------------------------------------------------------
verdict() { if (($1)); then echo met; else echo "**missed**"; fi; }
cold_limit=$((median[initdb_start_createdb] * 12 / 10))
rss_mib=$(awk -v k="$rss_kib" 'BEGIN {printf "%.1f", k / 1024}')
echo "| measurement ($(nproc) CPUs) | median of $runs | min–max | target |"
echo "|---|---|---|---|"
echo "| \`opsbox up -d\`, warm (cached binaries, existing data) | ${median[up_warm]} ms | ${range[up_warm]} ms | ≤ 300 ms: $(verdict "${median[up_warm]} <= 300") |"
echo "| \`opsbox up -d\`, cold (fresh data dir: initdb, createdb) | ${median[up_cold]} ms | ${range[up_cold]} ms | ≤ 1.2 × by hand = $cold_limit ms: $(verdict "${median[up_cold]} <= cold_limit") |"
echo "| \`opsbox down\` of a running stack | ${median[down]} ms | ${range[down]} ms | ≤ 300 ms: $(verdict "${median[down]} <= 300") |"
echo "| supervisor idle RSS (VmRSS, 2 s after \`up -d\`) | $rss_mib MiB | $rss_range MiB | ≤ 20 MiB: $(verdict "$rss_kib <= 20 * 1024") |"
echo "| by hand: nats-server to \`/healthz?js-enabled-only=true\` 200 | ${median[nats_by_hand]} ms | ${range[nats_by_hand]} ms | |"
echo "| by hand: \`pg_ctl start -w\` (initialised data dir) | ${median[pg_ctl_start]} ms | ${range[pg_ctl_start]} ms | |"
echo "| by hand: \`postgres\` until \`pg_isready\` | ${median[postgres_direct]} ms | ${range[postgres_direct]} ms | |"
echo "| by hand: \`initdb\` + \`pg_ctl start -w\` + \`createdb\` | ${median[initdb_start_createdb]} ms | ${range[initdb_start_createdb]} ms | |"
echo "| by hand: \`pg_ctl stop -m fast\` | ${median[pg_ctl_stop]} ms | ${range[pg_ctl_stop]} ms | |"
