#!/usr/bin/env bash
# S3 throughput on this machine, in one run: opsbox's S3 endpoint (examples/s3_serve.rs),
# nginx from Debian as the plain-HTTP reference (sendfile GET, WebDAV PUT without fsync), and
# the disk's own limits measured by a plain program on the same file system: write + fsync of
# 256 MiB, MD5 of 256 MiB, and the one-file durable sequence of a 4 KiB object (write, fsync,
# rename, directory fsync). Upstream s3s-fs 0.14.1 is added with BENCH_S3S_FS=1 (built from
# the crate registry into target/bench-tools the first time: a long release build).
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

if ! command -v nginx >/dev/null; then
    echo "bench: installing nginx (Debian package) as the reference server" >&2
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get install -y nginx-light >&2 || "${sudo[@]}" apt-get install -y nginx >&2
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build "${flag[@]}" --example s3_serve --example s3_bench >&2
with_s3s_fs=${BENCH_S3S_FS:-0}
if [[ $with_s3s_fs == 1 && ! -x target/bench-tools/bin/s3s-fs ]]; then
    (unset CARGO_TARGET_DIR; cargo install s3s-fs@0.14.1 --locked --features binary --root target/bench-tools) >&2
fi
serve="$target_dir/$profile/examples/s3_serve"
driver="$target_dir/$profile/examples/s3_bench"

# Under target/ (the project's disk), not /tmp, which may be a RAM file system.
mkdir -p "$target_dir/bench-work"
work=$(mktemp -d "$target_dir/bench-work/s3.XXXXXX")
work=$(cd "$work" && pwd)
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

# upstream s3s-fs (optional)
if [[ $with_s3s_fs == 1 ]]; then
    port=$(free_port)
    mkdir -p "$work/s3s-fs/bench"
    target/bench-tools/bin/s3s-fs --host 127.0.0.1 --port "$port" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3s-fs" \
        >"$work/s3s-fs.log" 2>&1 &
    pids+=($!)
    wait_port "$port" "s3s-fs"
    run_driver s3s-fs s3 "http://127.0.0.1:$port" bench
fi

# nginx: static files for GET (sendfile), WebDAV PUT (no fsync) on the same disk.
mkdir -p "$work/www/static/small" "$work/www/dav" "$work/nginx-temp"
head -c $((256 * 1024 * 1024)) /dev/zero >"$work/www/static/big.bin"
for c in 0 1 2 3 4 5 6 7; do for i in $(seq 0 99); do head -c 4096 /dev/zero >"$work/www/static/small/$c-$i"; done; done
nginx_port=$(free_port)
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$work/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx-temp;
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
        location /dav/ { dav_methods PUT; create_full_put_path on; }
    }
}
CONF
"$nginx_bin" -c "$work/nginx.conf" -e "$work/nginx-error.log" >"$work/nginx.out" 2>&1 &
pids+=($!)
wait_port "$nginx_port" "nginx"
run_driver nginx raw "http://127.0.0.1:$nginx_port/static" "http://127.0.0.1:$nginx_port/dav"

# The disk's limits, by a plain program on the same file system.
mkdir -p "$work/disk"
while read -r name value unit; do
    results["disk,$name"]="$value $unit"
done < <(python3 - "$work/disk" <<'PY'
import hashlib, os, sys, time
d = sys.argv[1]
chunk = os.urandom(1 << 20)
t = time.perf_counter()
fd = os.open(f"{d}/big", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for _ in range(256):
    os.write(fd, chunk)
os.fsync(fd)
os.close(fd)
print("write_fsync_256MiB", round(256 * (1 << 20) / (time.perf_counter() - t) / 1e6), "MB/s")
h = hashlib.md5()
t = time.perf_counter()
for _ in range(256):
    h.update(chunk)
print("md5_256MiB", round(256 * (1 << 20) / (time.perf_counter() - t) / 1e6), "MB/s")
small = os.urandom(4096)
dfd = os.open(d, os.O_RDONLY)
n, t = 0, time.perf_counter()
while time.perf_counter() - t < 5:
    tmp = f"{d}/tmp-{n}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, small)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, f"{d}/object-{n % 100}")
    os.fsync(dfd)
    n += 1
print("durable_4KiB_one_file", round(n / (time.perf_counter() - t)), "ops/s")
PY
)

header="| measurement ($profile build, $(nproc) CPUs) | opsbox | nginx |"
rule="|---|---|---|"
if [[ $with_s3s_fs == 1 ]]; then header+=" s3s-fs 0.14.1 |"; rule+="---|"; fi
header+=" disk limit (plain program, same bytes) |"
rule+="---|"
echo "$header"
echo "$rule"
for name in put_256MiB get_256MiB put_4KiB_8_clients get_4KiB_8_clients put_4KiB_1_connection get_4KiB_1_connection; do
    case $name in
        put_256MiB) disk="write + fsync: ${results[disk,write_fsync_256MiB]:-n/a} (MD5 alone: ${results[disk,md5_256MiB]:-n/a})" ;;
        put_4KiB_*) disk="write + fsync + rename + dir fsync of one file: ${results[disk,durable_4KiB_one_file]:-n/a}" ;;
        *) disk="—" ;;
    esac
    row="| $name | ${results[opsbox,$name]:-n/a} | ${results[nginx,$name]:-n/a} |"
    if [[ $with_s3s_fs == 1 ]]; then row+=" ${results[s3s-fs,$name]:-n/a} |"; fi
    echo "$row $disk |"
done
