#!/bin/sh
# One image, every role (see compose.yaml). web, realtime, train, alerts and beat are the processes
# of the Procfile, run by honcho as `make run` runs them; `serve` runs all of them in one container.
# Any other command runs as given (`manage.py shell`, ...).
set -e
# prometheus_client's multiprocess mode: the processes of this container count into one directory.
PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$(mktemp -d)}"
export PROMETHEUS_MULTIPROC_DIR
case "$1" in
  web|realtime|train|alerts|beat) exec honcho -f /app/Procfile start --no-prefix --no-colour "$1" ;;
  serve)    shift; exec honcho -f /app/Procfile start --no-prefix --no-colour "$@" ;;
  migrate)  shift; exec python manage.py migrate --noinput "$@" ;;
  *)        exec "$@" ;;
esac
