# Shared set-up of the benches that run PostgreSQL by hand beside opsbox (sourced, not run):
# the opsbox binary (the release build, built first, or OPSBOX_BIN to compare another build),
# a root check, and the binaries opsbox uses, from `opsbox fetch`.
# Sets: repo, target_dir, opsbox, pg_user, nats_server, pg_bin; defines client_tool.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
target_dir=${CARGO_TARGET_DIR:-target}
if [[ -n "${OPSBOX_BIN:-}" ]]; then
    opsbox=$(realpath "$OPSBOX_BIN") # another build, e.g. an older commit's, to compare
else
    cargo build --release --bin opsbox >&2
    opsbox=$(cd "$target_dir/release" && pwd)/opsbox
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "bench: run as root (PostgreSQL by hand is started as the postgres account)" >&2
    exit 1
fi
pg_user=${OPSBOX_POSTGRES_USER:-postgres}

# Where opsbox's binaries are: `fetch` prints "<name> <version>: <path>" for each.
fetched=$("$opsbox" fetch 2>&1)
nats_server=$(sed -n 's/^nats-server [^:]*: \(\/.*\)$/\1/p' <<<"$fetched" | tail -1)
pg_dir=$(sed -n 's/^postgresql [^:]*: \(\/.*\)$/\1/p' <<<"$fetched" | tail -1)
if [[ ! -x "$nats_server" || ! -x "$pg_dir/bin/postgres" ]]; then
    echo "bench: cannot find the binaries in the output of opsbox fetch:" >&2
    echo "$fetched" >&2
    exit 1
fi
pg_bin="$pg_dir/bin"
# The bundle opsbox fetches holds only the server tools; the client tools come from PATH then.
client_tool() {
    if [[ -x "$pg_bin/$1" ]]; then echo "$pg_bin/$1"; elif command -v "$1"; then :; else
        echo "bench: $1 is neither in $pg_bin nor on PATH (install the PostgreSQL client)" >&2
        exit 1
    fi
}
