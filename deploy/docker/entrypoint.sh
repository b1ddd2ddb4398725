#!/bin/sh
# The image's entrypoint: one image, six processes. The process is named by
# SERVICE or by the first argument (`docker run chat:local messages`); with
# neither it is the gateway. Any further arguments go to the process.
# node runs as PID 1 (exec), so SIGTERM reaches it and it drains and exits.
set -eu

SERVICES="gateway conversations messages blocks presence notifications"

usage() {
  echo "entrypoint: $1" >&2
  echo "entrypoint: choose one of: $SERVICES (set SERVICE=<name> or pass <name> as the first argument)" >&2
  exit 64
}

is_service() {
  for known in $SERVICES; do
    [ "$1" = "$known" ] && return 0
  done
  return 1
}

chosen=${SERVICE:-}
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  # A first argument that is not a flag names the service.
  if [ -n "$chosen" ] && [ "$chosen" != "$1" ]; then
    usage "SERVICE=$chosen and the argument \"$1\" disagree"
  fi
  chosen=$1
  shift
fi
chosen=${chosen:-gateway}

if ! is_service "$chosen"; then
  usage "unknown service \"$chosen\""
fi

# From the image's root (the directory two levels above this script), wherever the container's cwd is.
cd "$(dirname "$0")/../.."
export SERVICE="$chosen"
if [ ! -f "services/$SERVICE/src/main.ts" ]; then
  usage "services/$SERVICE/src/main.ts is missing from the image"
fi

exec node --import tsx "services/$SERVICE/src/main.ts" "$@"
