#!/bin/sh
# Creates the historian JetStream streams. Idempotent: safe to run any number of times.
# Honours NATS_URL (default nats://localhost:4222). Every option is given explicitly, so the
# nats CLI never prompts. opsbox reads the `nats stream add` line below to create the same stream.
set -eu

NATS_URL="${NATS_URL:-nats://localhost:4222}"
export NATS_URL

# Wait for the server (up to 60 s).
i=0
until nats server check connection >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then
    echo "setup_streams: NATS at $NATS_URL not reachable after 60 s" >&2
    exit 1
  fi
  sleep 1
done

if nats stream info EVENTS >/dev/null 2>&1; then
  echo "setup_streams: stream EVENTS already exists"
else
  nats stream add EVENTS \
    --subjects "enterprise.>" \
    --storage file \
    --retention limits \
    --discard old \
    --replicas 1 \
    --max-msgs=-1 \
    --max-bytes=-1 \
    --max-age=0 \
    --max-msg-size=-1 \
    --max-msgs-per-subject=-1 \
    --dupe-window=2m \
    --no-allow-rollup \
    --no-deny-delete \
    --no-deny-purge \
    --defaults
  echo "setup_streams: stream EVENTS created"
fi
