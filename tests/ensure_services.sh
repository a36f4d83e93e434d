#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1; start them if installed but stopped.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
  pg_up || { echo "error: PostgreSQL is not reachable on 127.0.0.1:5432 — install PostgreSQL 15+ (apt-get install postgresql) with trust auth for user postgres"; exit 1; }
fi

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  fi
  redis_up || { echo "error: Redis is not reachable on 127.0.0.1:6379 — install Redis 7 (apt-get install redis-server)"; exit 1; }
fi
echo "services: PostgreSQL and Redis are up"

# The suite's base database (pytest-django creates test_<name> beside it) and the benchmarks' own.
for db in anomalyhub anomalyhub_bench; do
  if ! psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -qc "create database $db" >/dev/null
  fi
done
