#!/usr/bin/env bash
# Runs every test of the repository: build, the ops/ file checks, then the Rust tests.
# Expects the tools that .ci/run installs (nats-server, docker-compose).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

echo "== cargo build"
cargo build

for check in tests/infra/*.sh; do
    echo "== bash $check"
    bash "$check"
done

echo "== cargo test"
cargo test -- --test-threads=4
