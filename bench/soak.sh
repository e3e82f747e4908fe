#!/usr/bin/env bash
# Soak: repeats fault scenarios 1-3 of the fault suite (kill -9 nats-server x10, kill -9 the
# postmaster x10, kill -9 opsbox itself) for N minutes and prints the counts.
#
#   bench/soak.sh [MINUTES]      (default 10)
#
# Each round runs the three tests once (real processes, real signals); every round checks that
# no acknowledged message or committed row is missing. Not part of the default test run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
minutes=${1:-10}
deadline=$(( $(date +%s) + minutes * 60 ))
log="$ROOT/target/soak-$(date +%Y%m%d-%H%M%S).log"

cargo test --test it --no-run >/dev/null 2>&1

rounds=0; failed_rounds=0; kills=0; acked=0; committed=0
while [ "$(date +%s)" -lt "$deadline" ]; do
    rounds=$((rounds + 1))
    if ! out=$(cargo test --test it -- --nocapture --test-threads=1 \
            faults::nats_server_killed faults::postmaster_killed faults::opsbox_killed 2>&1); then
        failed_rounds=$((failed_rounds + 1))
    fi
    printf '%s\n' "$out" >>"$log"
    # Lines printed by the tests: "nats: 10 kills, N acked, ..." / "postgres: 10 kills, N committed, ..."
    a=$(printf '%s\n' "$out" | sed -n 's/.*nats: 10 kills, \([0-9]*\) acked.*/\1/p' | head -n1)
    c=$(printf '%s\n' "$out" | sed -n 's/.*postgres: 10 kills, \([0-9]*\) committed.*/\1/p' | head -n1)
    acked=$((acked + ${a:-0})); committed=$((committed + ${c:-0}))
    kills=$((kills + 21))
    slowest=$(printf '%s\n' "$out" | grep -o '[a-z]*: 10 kills, .*slowest return [0-9.]*[mµn]*s' | sed 's/: 10 kills.*slowest return / back within /' | paste -sd ';' -)
    echo "round $rounds: failed rounds so far $failed_rounds, acked messages $acked, committed rows $committed ($slowest)"
done

echo "soak: $minutes min, $rounds rounds, $kills kill -9s (10 nats-server + 10 postmaster + 1 opsbox per round)"
echo "soak: $acked acknowledged messages and $committed committed rows checked after the faults"
echo "soak: $failed_rounds rounds with a failure (details: $log)"
[ "$failed_rounds" -eq 0 ]
