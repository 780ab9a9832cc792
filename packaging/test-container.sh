#!/usr/bin/env bash
# Build the container image and run two gateway instances from it, as the compose file does,
# against this machine's RabbitMQ and PostgreSQL (host network): the image builds from the
# source tree, runs as its own non-root user with the packaged config, keeps its state in its
# volume, and the two instances share deduplication through PostgreSQL (a message accepted by
# one is a duplicate at the other). Then a reload by SIGHUP, a stop by SIGTERM, and cleanup.
#
#   bash packaging/test-container.sh
#
# Needs a running Docker daemon that can reach the base images (docker.io/library/rust:1-bookworm
# and debian:bookworm-slim), RabbitMQ on 127.0.0.1:5672 (guest) and PostgreSQL on
# 127.0.0.1:5432 (trust, database test), with rabbitmqctl and psql on this machine. Each run
# gets a RabbitMQ virtual host and a PostgreSQL schema of its own, removed at the end: nothing
# is left behind but the image `wingspan:dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || fail "no Docker daemon answers"
tag=ctr$(date +%s)
schema="wingspan_$tag"
cleanup() {
  docker rm -f "$tag-1" "$tag-2" >/dev/null 2>&1 || true
  docker volume rm "$tag-1" "$tag-2" >/dev/null 2>&1 || true
  psql -q -h 127.0.0.1 -U postgres test -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_vhost "$tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "building the image"
# DOCKER_BUILD_FLAGS: what this daemon needs besides, e.g. "--network host" without a bridge.
# shellcheck disable=SC2086
docker build ${DOCKER_BUILD_FLAGS:-} -f packaging/container/Containerfile -t wingspan:dev . | tail -3
[ "$(docker image inspect -f '{{.Config.User}}' wingspan:dev)" = "10001:10001" ] || fail "the image does not run as its own user"

rabbitmqctl -q add_vhost "$tag"
rabbitmqctl -q set_permissions -p "$tag" guest '.*' '.*' '.*'
psql -q -h 127.0.0.1 -U postgres test -c "CREATE SCHEMA $schema"
store="postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D$schema"

start() { # name http admin
  docker run -d --name "$1" --network host \
    -v "$1:/var/lib/wingspan" \
    -e WINGSPAN_INSTANCE="$1" -e WINGSPAN_AUDIT_STORE="$store" \
    -e WINGSPAN_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$tag" \
    -e WINGSPAN_HTTP_LISTEN="127.0.0.1:$2" -e WINGSPAN_ADMIN_LISTEN="127.0.0.1:$3" \
    wingspan:dev >/dev/null
}
ready() { # name http
  for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0
    [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || { docker logs "$1"; fail "$1 exited"; }
    sleep 0.2
  done
  docker logs "$1"; fail "$1 not ready"
}
post() { # port → status
  curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer dev-rehab-token' \
    -H 'Content-Type: application/json' --data-binary @config/examples/enforcement.material.submit.json \
    "http://127.0.0.1:$1/v1/messages"
}

say "two instances, one shared store"
start "$tag-1" 18180 18181
ready "$tag-1" 18180
start "$tag-2" 18190 18191
ready "$tag-2" 18190
[ "$(docker exec "$tag-1" id -u)" = 10001 ] || fail "not running as uid 10001"
docker exec "$tag-1" sh -c 'touch /usr/bin/x 2>/dev/null' && fail "the gateway's user can write /usr/bin"
[ -n "$(docker exec "$tag-1" find /var/lib/wingspan -user 10001 -name '*.db')" ] || fail "no state store in the volume"

say "accepted at one instance, a duplicate at the other"
code=$(post 18180); [ "$code" = 202 ] || { docker logs "$tag-1"; fail "first post answered $code"; }
code=$(post 18190); [ "$code" = 200 ] || { docker logs "$tag-2"; fail "the retry at the other instance answered $code"; }
echo "202 at $tag-1, 200 (the original receipt) at $tag-2"

say "reload (SIGHUP) and stop (SIGTERM)"
docker kill --signal HUP "$tag-1" >/dev/null
for _ in $(seq 1 50); do docker logs "$tag-1" 2>&1 | grep -q 'config reload' && break; sleep 0.2; done
docker logs "$tag-1" 2>&1 | grep -q 'config reload' || { docker logs "$tag-1"; fail "no reload after SIGHUP"; }
[ "$(docker inspect -f '{{.State.Running}}' "$tag-1")" = true ] || fail "died on SIGHUP"
docker stop -t 20 "$tag-1" "$tag-2" >/dev/null
for c in "$tag-1" "$tag-2"; do
  [ "$(docker inspect -f '{{.State.ExitCode}}' "$c")" = 0 ] || { docker logs "$c"; fail "$c did not stop cleanly"; }
done
echo "both stopped with status 0"
say "container test passed"
