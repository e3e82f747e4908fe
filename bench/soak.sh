#!/usr/bin/env bash
# Soak: repeats fault scenarios 1-3 of the fault suite for N minutes and prints what they
# measured: kill -9 nats-server x10 and the postmaster x10 at random 0.3-2 s intervals under
# load, kill -9 opsbox under load, and the hard crash (supervisor, nats-server and postmaster
# SIGKILLed at once, `up -d` 0.5 s later, x10, with S3 PUTs).
#
#   bench/soak.sh [MINUTES]          (default 10)
#   bench/soak.sh --from-log FILE    summarise the rounds a previous soak saved in its log
#
# Every number comes from the tests' own output, and a round counts only when every expected
# test reported `ok`; a number a passing test did not print fails the round (never read as 0).
# Not part of the default test run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
from_log=
if [ "${1:-}" = --from-log ]; then
    from_log=${2:?bench/soak.sh --from-log needs the log file of an earlier soak}
    minutes="(from $from_log)"
else
    minutes=${1:-10}
fi
log="$ROOT/target/soak-$(date +%Y%m%d-%H%M%S).log"

expected=(
    faults::nats_server_killed_ten_times_comes_back_and_loses_no_acked_message
    faults::postmaster_killed_ten_times_comes_back_and_loses_no_committed_row
    faults::opsbox_killed_with_sigkill_leaves_no_orphans_and_the_next_up_recovers
    faults::everything_sigkilled_at_once_ten_times_then_up_at_once_loses_nothing
)


# The one number `pattern` (a sed expression with one group) finds in `text`; fails when absent.
number() {
    local value
    value=$(printf '%s\n' "$2" | sed -n "$1" | head -n1)
    [ -n "$value" ] || { echo "soak: the output lacks '$3'" >&2; return 1; }
    printf '%s\n' "$value"
}

# Maximum of the comma-separated list `pattern` finds.
largest() {
    local list
    list=$(number "$@") || return 1
    printf '%s\n' "$list" | tr -d ' ' | tr ',' '\n' | sort -n | tail -n1
}

# The numbers of one round, one a line, in the order read below.
parse_round() {
    local out=$1
    number 's/.*nats: \([0-9]*\) kills, [0-9]* acked.*/\1/p' "$out" "nats: N kills" &&
    number 's/.*nats: [0-9]* kills, \([0-9]*\) acked.*/\1/p' "$out" "nats: N acked" &&
    number 's/.*postgres: \([0-9]*\) kills, [0-9]* committed.*/\1/p' "$out" "postgres: N kills" &&
    number 's/.*postgres: [0-9]* kills, \([0-9]*\) committed.*/\1/p' "$out" "postgres: N committed" &&
    largest 's/.*nats: back after (ms) \[\(.*\)\]$/\1/p' "$out" "nats: back after" &&
    largest 's/.*postgres: back after (ms) \[\(.*\)\]$/\1/p' "$out" "postgres: back after" &&
    number 's/.*hard crash: 10 rounds, \([0-9]*\) acked.*/\1/p' "$out" "hard crash: N acked" &&
    number 's/.*hard crash: .* \([0-9]*\) committed.*/\1/p' "$out" "hard crash: N committed" &&
    number 's/.*hard crash: .* \([0-9]*\) PUTs acknowledged.*/\1/p' "$out" "hard crash: N PUTs" &&
    number 's/.*hard crash: .*slowest up -d \([0-9.]*\)s$/\1/p' "$out" "hard crash: slowest up -d"
}

rounds=0; failed_rounds=0; kills=0; acked=0; committed=0; hard_acked=0; hard_committed=0; hard_puts=0
worst_nats=0; worst_postgres=0; worst_up=0
# Check one round's output and add its numbers.
account_round() {
    local out=$1 ok=1 parsed
    rounds=$((rounds + 1))
    # --nocapture interleaves the tests' own lines with libtest's, so a pass is the summary
    # line with every expected test counted and none failed, plus each test having started.
    grep -qx "test result: ok. ${#expected[@]} passed; 0 failed.*" <<<"$out" || { echo "soak: round $rounds: not all ${#expected[@]} tests passed" >&2; ok=0; }
    for test in "${expected[@]}"; do
        grep -qF "test $test ... " <<<"$out" || { echo "soak: round $rounds: $test did not run" >&2; ok=0; }
    done
    if [ "$ok" -eq 1 ] && parsed=$(parse_round "$out"); then
        read -r -d '' nk na pk pc wn wp ha hc hp hu <<<"$parsed" || true
        kills=$((kills + nk + pk + 1 + 10 * 3))
        acked=$((acked + na)); committed=$((committed + pc))
        hard_acked=$((hard_acked + ha)); hard_committed=$((hard_committed + hc)); hard_puts=$((hard_puts + hp))
        [ "$wn" -gt "$worst_nats" ] && worst_nats=$wn
        [ "$wp" -gt "$worst_postgres" ] && worst_postgres=$wp
        worst_up=$(printf '%s\n%s\n' "$worst_up" "$hu" | sort -g | tail -n1)
    else
        failed_rounds=$((failed_rounds + 1))
    fi
    echo "round $rounds: failed rounds $failed_rounds; acked $acked + $hard_acked, committed $committed + $hard_committed, PUTs $hard_puts; worst outage nats ${worst_nats} ms, postgres ${worst_postgres} ms"
}

if [ -n "$from_log" ]; then
    round_out=; in_round=0
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line == "== round "* ]]; then
            [ "$in_round" -eq 1 ] && account_round "$round_out"
            round_out=; in_round=1
        elif [ "$in_round" -eq 1 ]; then
            round_out+="$line"$'\n'
        fi
    done <"$from_log"
    [ "$in_round" -eq 1 ] && account_round "$round_out"
else
    cargo test --test it --no-run >>"$log" 2>&1 || { echo "soak: the build failed (see $log)" >&2; exit 1; }
    deadline=$(( $(date +%s) + minutes * 60 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        set +e
        out=$(cargo test --test it -- --nocapture --exact --test-threads=1 "${expected[@]}" 2>&1)
        set -e
        printf '== round %s\n%s\n' "$((rounds + 1))" "$out" >>"$log"
        account_round "$out"
    done
fi

passed=$((rounds - failed_rounds))
echo "soak: $minutes min: $rounds rounds ($passed passed), $kills SIGKILLs in passed rounds"
echo "soak: kill loops: $acked acknowledged messages and $committed committed rows checked, 0 missing"
echo "soak: hard crashes: $hard_acked messages, $hard_committed rows, $hard_puts S3 PUTs acknowledged and checked, 0 missing; slowest up -d ${worst_up} s"
echo "soak: longest outage after a kill: nats-server ${worst_nats} ms, postgres ${worst_postgres} ms"
echo "soak: $failed_rounds rounds with a failure (details: ${from_log:-$log})"
[ "$rounds" -gt 0 ] && [ "$failed_rounds" -eq 0 ]
