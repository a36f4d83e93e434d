#!/bin/sh
# One image, every role (see compose.yaml). Any other command runs as given (`manage.py shell`, ...).
set -e
case "$1" in
  # WEB_PROCESSES daphne processes (default: cores + 1, the cores capped by a CPU quota) on one socket.
  web)      shift; exec python manage.py serve 0.0.0.0:8000 --web-only "$@" ;;
  worker)   shift; exec celery -A anomalyhub worker -l "${LOG_LEVEL:-INFO}" "$@" ;;
  beat)     shift; exec celery -A anomalyhub beat -s /tmp/celerybeat-schedule -l "${LOG_LEVEL:-INFO}" "$@" ;;
  migrate)  shift; exec python manage.py migrate --noinput "$@" ;;
  # Everything in one container (web, a worker per queue group, beat), as `make run` does without Docker.
  serve)    shift; exec python manage.py serve 0.0.0.0:8000 "$@" ;;
  *)        exec "$@" ;;
esac
