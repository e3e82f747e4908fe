#!/usr/bin/env bash
# Checks ops/docker-compose.yml offline (no Docker engine needed):
#   1. `docker-compose config -q` (Debian's docker-compose 1.29) validates the file;
#   2. the normalised `docker-compose config` output has the images, ports, credentials,
#      volumes, healthchecks and setup commands that opsbox and the historian rely on.
#
# docker-compose 1.x does not know the top-level `name:` key of the Compose Specification (it
# fails with "'name' does not match any of the regexes"), although Compose v2 reads it. The check
# therefore validates a temp copy without that one line, in the ops/ directory so that relative
# paths resolve, and passes the same name with `-p`. Nothing else is changed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OPS="$ROOT/ops"
FILE="$OPS/docker-compose.yml"

fail() {
    echo "verify_docker_compose: FAIL: $*" >&2
    exit 1
}

command -v docker-compose >/dev/null ||
    fail "docker-compose is not on PATH (install it with: apt-get install -y docker-compose)"
[ -f "$FILE" ] || fail "$FILE does not exist"

project=$(sed -n 's/^name:[[:space:]]*\([A-Za-z0-9_-]*\)[[:space:]]*$/\1/p' "$FILE")
[ -n "$project" ] || fail "ops/docker-compose.yml has no top-level name: (the project name)"
copy=$(mktemp "$OPS/.verify-compose.XXXXXX.yml")
trap 'rm -f "$copy"' EXIT
sed '/^name:/d' "$FILE" >"$copy"
compose() { docker-compose --project-directory "$OPS" -p "$project" -f "$copy" "$@"; }

# 1. Validation.
if ! errors=$(compose config -q 2>&1); then
    fail "docker-compose rejects ops/docker-compose.yml: $errors"
fi
config=$(compose config 2>&1) || fail "docker-compose config failed: $config"
echo "verify_docker_compose: docker-compose $(docker-compose version --short) accepts ops/docker-compose.yml (project $project)"

# 2. Required content, read from the normalised output.
services=$(compose config --services)
for service in nats nats-setup minio minio-setup postgres; do
    grep -qx "$service" <<<"$services" || fail "ops/docker-compose.yml has no service $service"
done
volumes=$(compose config --volumes)
for volume in nats_data minio_data pg_data; do
    grep -qx "$volume" <<<"$volumes" || fail "ops/docker-compose.yml has no named volume $volume"
done

# The lines of one service in the normalised output (services are at indent 2).
service_block() {
    awk -v name="  $1:" '
        /^[^ ]/ { inside = 0 }
        /^  [^ ]/ { inside = ($0 == name) ; next }
        inside { print }
    ' <<<"$config"
}
expect() { # service, description, a whole line of its block (leading spaces aside)
    service_block "$1" | sed 's/^[[:space:]]*//' | grep -qxF -- "$3" || fail "service $1: expected $2 (the line: $3)"
}
expect_port() { # service, host port, container port
    service_block "$1" | grep -A1 -x -- "    - published: $2" | grep -qx -- "      target: $3" ||
        fail "service $1: expected port $2:$3"
}
expect_healthcheck() {
    service_block "$1" | grep -qx '    healthcheck:' || fail "service $1: expected a healthcheck"
}

service_block nats | grep -qE '^    image: nats(:|$)' || fail "service nats: expected a nats image"
expect_port nats 4222 4222
expect_port nats 8222 8222
expect nats "the nats.conf mount" "- $OPS/nats.conf:/etc/nats/nats.conf:ro"
expect nats "the -c option" "command: -c /etc/nats/nats.conf"
expect nats "the JetStream volume" "- nats_data:/data/jetstream:rw"
expect_healthcheck nats

service_block nats-setup | grep -qE '^    image: natsio/nats-box(:[A-Za-z0-9._-]+)?$' || fail "service nats-setup: expected the natsio/nats-box image"
expect nats-setup "the setup script mount" "- $OPS/setup_streams.sh:/setup_streams.sh:ro"
service_block nats-setup | grep -A1 -x '      nats:' | grep -qx '        condition: service_healthy' ||
    fail "service nats-setup: expected depends_on nats with condition service_healthy"

service_block minio | grep -qE '^    image: minio/minio(:|$)' || fail "service minio: expected a minio/minio image"
expect_port minio 9000 9000
expect_port minio 9001 9001
expect minio "the root user" "MINIO_ROOT_USER: minioadmin"
expect minio "the root password" "MINIO_ROOT_PASSWORD: minioadmin"
expect minio "the data volume" "- minio_data:/data:rw"
expect minio "the server command with the console address" 'command: server /data --console-address ":9001"'
expect_healthcheck minio

expect minio-setup "the bucket creation" "mc mb --ignore-existing local/historian"
service_block minio-setup | grep -A1 -x '      minio:' | grep -qx '        condition: service_healthy' ||
    fail "service minio-setup: expected depends_on minio with condition service_healthy"
expect minio-setup "a one-shot restart policy" 'restart: "no"'

expect postgres "the postgres:16-alpine image" "image: postgres:16-alpine"
expect_port postgres 5432 5432
expect postgres "the user" "POSTGRES_USER: postgres"
expect postgres "the password" "POSTGRES_PASSWORD: postgres"
expect postgres "the database" "POSTGRES_DB: historian"
expect postgres "the data volume" "- pg_data:/var/lib/postgresql/data:rw"
expect postgres "the initdb.d mount" "- $OPS/postgres/initdb.d:/docker-entrypoint-initdb.d:ro"
expect_healthcheck postgres

echo "verify_docker_compose: images, ports, credentials, volumes, healthchecks and setup commands: ok"
echo "verify_docker_compose: PASS"
