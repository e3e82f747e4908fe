#!/usr/bin/env bash
# Console page loads with 10,000 objects in a bucket: the object listing (first and a later
# page), the bucket list, the overview and its live fragment, timed with curl after signing in.
#
# usage: bench/console.sh [OBJECTS] [RUNS]     (defaults 10000 and 20; median and max of RUNS)
# Uses the release build unless OPSBOX_BIN names another opsbox binary. Only S3 and the console
# run (no downloads). Objects are written with boto3 from target/test-venv (tests/prereqs.sh).
# Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

objects=${1:-10000}
runs=${2:-20}
if [[ -z "${OPSBOX_BIN:-}" ]]; then
    cargo build --release --bin opsbox >&2
    OPSBOX_BIN=${CARGO_TARGET_DIR:-target}/release/opsbox
fi
python=${OPSBOX_TEST_VENV:-target/test-venv}/bin/python

work=$(mktemp -d)
cleanup() {
    set +e
    "$OPSBOX_BIN" --quiet --data-dir "$work/data" down >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
s3_port=$(free_port)
console_port=$(free_port)
"$OPSBOX_BIN" --quiet --data-dir "$work/data" up -d -s s3,console \
    --s3-port "$s3_port" --console-port "$console_port" >&2

"$python" - "$s3_port" "$objects" <<'PY'
import sys, concurrent.futures as futures
import boto3
from botocore.config import Config
port, count = int(sys.argv[1]), int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="minioadmin",
                  aws_secret_access_key="minioadmin", region_name="us-east-1",
                  config=Config(max_pool_connections=16))
def put(i):
    s3.put_object(Bucket="historian", Key=f"readings/{i:05d}.json", Body=b"{}")
with futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(count)))
PY

base="http://127.0.0.1:$console_port"
jar="$work/cookies"
token=$(curl -sf -c "$jar" -b "$jar" "$base/login" | grep -o 'name="csrf" value="[^"]*"' | cut -d'"' -f4)
curl -sf -c "$jar" -b "$jar" -o /dev/null \
    --data-urlencode "username=minioadmin" --data-urlencode "password=minioadmin" \
    --data-urlencode "csrf=$token" --data-urlencode "next=/" "$base/login"
next=$(curl -sf -b "$jar" "$base/s3/b/historian?prefix=readings%2F" \
    | grep -o 'rel="next" href="[^"]*"' | cut -d'"' -f4 | sed 's/&amp;/\&/g')

time_page() {
    local path=$1
    for _ in $(seq "$runs"); do
        curl -sf -b "$jar" -o /dev/null -w '%{time_total}\n' "$base$path"
    done | sort -n | awk '{ t[NR] = $1 } END { printf "%.1f | %.1f", t[int((NR + 1) / 2)] * 1000, t[NR] * 1000 }'
}

echo "| page ($objects objects in historian/readings/) | median ms | max ms |"
echo "|---|---|---|"
for path in "/s3/b/historian?prefix=readings%2F" "$next" "/s3" "/" "/overview/live"; do
    echo "| \`${path%%&token=*}\`$([[ $path == *token=* ]] && echo ' (page 2)') | $(time_page "$path") |"
done
