#!/usr/bin/env bash
# S3 throughput on this machine, in one run: opsbox's S3 endpoint (examples/s3_serve.rs),
# upstream s3s-fs 0.14.1 (built from the crate registry into target/bench-tools), and a raw
# loopback reference (python3 -m http.server for GET, wsgidav for PUT).
#
# usage: bench/s3.sh [--release]        (debug build unless --release)
# Prints a markdown table for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
flag=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    flag=(--release)
fi
target_dir=${CARGO_TARGET_DIR:-target}

cargo build "${flag[@]}" --example s3_serve --example s3_bench >&2
if [[ ! -x target/bench-tools/bin/s3s-fs ]]; then
    (unset CARGO_TARGET_DIR; cargo install s3s-fs@0.14.1 --locked --features binary --root target/bench-tools) >&2
fi
serve="$target_dir/$profile/examples/s3_serve"
driver="$target_dir/$profile/examples/s3_bench"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret

# Readiness probe with a deadline: the port accepts connections within 10 s.
wait_port() {
    local port=$1 name=$2
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "bench: $name did not accept connections on 127.0.0.1:$port within 10 s (log in $work)" >&2
    exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A results
run_driver() {
    local label=$1
    shift
    while read -r name value unit; do
        results["$label,$name"]="$value $unit"
    done < <("$driver" "$@")
}

# opsbox
port=$(free_port)
"$serve" "$port" "$work/opsbox" "$work/opsbox.log" >/dev/null &
pids+=($!)
wait_port "$port" "opsbox s3_serve"
run_driver opsbox s3 "http://127.0.0.1:$port" bench

# upstream s3s-fs
port=$(free_port)
mkdir -p "$work/s3s-fs/bench"
target/bench-tools/bin/s3s-fs --host 127.0.0.1 --port "$port" \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3s-fs" \
    >"$work/s3s-fs.log" 2>&1 &
pids+=($!)
wait_port "$port" "s3s-fs"
run_driver s3s-fs s3 "http://127.0.0.1:$port" bench

# raw loopback: static files for GET, WebDAV for PUT
mkdir -p "$work/static/small" "$work/dav/small"
head -c $((256 * 1024 * 1024)) /dev/zero >"$work/static/big.bin"
for c in 0 1 2 3 4 5 6 7; do for i in $(seq 0 99); do head -c 4096 /dev/zero >"$work/static/small/$c-$i"; done; done
get_port=$(free_port)
python3 -m http.server "$get_port" --bind 127.0.0.1 --directory "$work/static" >"$work/http.log" 2>&1 &
pids+=($!)
wait_port "$get_port" "python3 -m http.server"
if command -v wsgidav >/dev/null; then
    put_port=$(free_port)
    wsgidav --host 127.0.0.1 --port "$put_port" --root "$work/dav" --auth anonymous -q >"$work/dav.log" 2>&1 &
    pids+=($!)
    wait_port "$put_port" "wsgidav"
    # GET big.bin must come from the static server; the driver PUTs big.bin to WebDAV only.
    run_driver raw raw "http://127.0.0.1:$get_port" "http://127.0.0.1:$put_port"
else
    echo "bench: wsgidav is not installed (pip install wsgidav cheroot); raw PUT not measured" >&2
    BENCH_SKIP_PUT=1 run_driver raw raw "http://127.0.0.1:$get_port" "-"
fi

echo "| measurement ($profile build, $(nproc) CPUs) | opsbox | s3s-fs 0.14.1 | raw loopback |"
echo "|---|---|---|---|"
for name in put_256MiB get_256MiB put_4KiB_8_clients get_4KiB_8_clients put_4KiB_1_connection get_4KiB_1_connection; do
    echo "| $name | ${results[opsbox,$name]:-n/a} | ${results[s3s-fs,$name]:-n/a} | ${results[raw,$name]:-n/a} |"
done
