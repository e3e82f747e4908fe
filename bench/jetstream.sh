#!/usr/bin/env bash
# The cost of `sync_interval: always` (the nats-server wrapper configuration opsbox generates):
# acked publish throughput to EVENTS (enterprise.bench), sequential and with 64 acks in flight,
# against nats-server with opsbox's wrapper as generated, and with its sync_interval line removed
# (nats-server's default: fsync every 2 min).
#
# usage: bench/jetstream.sh [SECONDS] [PAYLOAD_BYTES]   (defaults 5 and 128)
# Release build. The store lives under TMPDIR (mktemp -d): put that on the disk you care about.
# nats-server comes from opsbox's cache (OPSBOX_CACHE_DIR if set). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
size=${2:-128}
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --bin opsbox --example nats_publish_bench >&2
opsbox=$(cd "$target_dir/release" && pwd)/opsbox
driver="$target_dir/release/examples/nats_publish_bench"

work=$(mktemp -d)
chmod 0755 "$work"
nats_pid=
cleanup() {
    set +e
    [[ -n "$nats_pid" ]] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null
    "$opsbox" --quiet --data-dir "$work/opsbox" down >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Let opsbox generate its wrapper (and prove it starts), then run nats-server by hand with it.
fetched=$("$opsbox" fetch 2>&1)
nats_server=$(sed -n 's/^nats-server [^:]*: \(\/.*\)$/\1/p' <<<"$fetched" | tail -1)
"$opsbox" --quiet --data-dir "$work/opsbox" up -d -s nats \
    --nats-port "$(free_port)" --nats-monitor-port "$(free_port)"
"$opsbox" --quiet --data-dir "$work/opsbox" down
generated="$work/opsbox/nats/opsbox-nats.conf"
grep -q '^ *sync_interval: always$' "$generated" || {
    echo "bench: $generated has no 'sync_interval: always' line" >&2
    exit 1
}

# Both variants sit next to the generated file so its relative include still resolves.
variant_conf() {
    local name=$1 conf="$work/opsbox/nats/bench-$1.conf"
    sed "s|^\( *store_dir:\).*|\1 \"$work/store-$name\"|" "$generated" >"$conf"
    [[ "$name" == default ]] && sed -i '/^ *sync_interval:/d' "$conf"
    echo "$conf"
}

wait_healthz() {
    for _ in $(seq 1000); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz?js-enabled-only=true")" == 200 ]] && return 0
        sleep 0.01
    done
    echo "bench: nats-server not healthy within 10 s (log in $work)" >&2
    exit 1
}

declare -A results
for variant in always default; do
    conf=$(variant_conf "$variant")
    port=$(free_port)
    monitor=$(free_port)
    "$nats_server" -c "$conf" -a 127.0.0.1 -p "$port" -m "$monitor" >"$work/nats-$variant.log" 2>&1 &
    nats_pid=$!
    wait_healthz "$monitor"
    while read -r name value unit; do
        results["$variant,$name"]="$value $unit"
    done < <("$driver" "nats://127.0.0.1:$port" "$seconds" "$size")
    kill "$nats_pid"
    wait "$nats_pid" || true
    nats_pid=
done

echo "| acked publish to EVENTS, $size B payload, $seconds s each ($(nproc) CPUs) | \`sync_interval: always\` (opsbox) | default (2 min) |"
echo "|---|---|---|"
for name in sequential pipelined_64; do
    echo "| $name | ${results[always,$name]:-n/a} | ${results[default,$name]:-n/a} |"
done
