"""A Celery worker holding an unacknowledged countdown task, waiting in BRPOP, outlives Redis
being SIGKILLed and restarted empty: it reconnects and answers again. With kombu 5.7.0's stock
Redis transport it exits ("Unrecoverable error: AttributeError(... 'hostname')"): this test is why
anomalyhub/celery.py keeps its Channel.close (celery/kombu#1733)."""

from __future__ import annotations

import time

import pytest
import redis as redis_py
from celery import Celery

from tests.workers import Worker, queued_for_real, wait_for, worker_env

from .private_services import PrivateRedis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_holding_a_countdown_task_outlives_a_redis_restart():
    redis = PrivateRedis()
    broker_url = redis.url()  # the broker is REDIS_URL's own db
    worker = Worker("detect", worker_env(REDIS_URL=broker_url))
    broker = redis_py.Redis.from_url(broker_url)
    # Not the current app: shared tasks that later tests queue would go to this dead broker.
    pinger = Celery(broker=broker_url, set_as_current=False)
    broker_errors = pinger.connection_for_write().connection_errors

    def answers() -> bool:
        try:
            return bool(pinger.control.ping(timeout=1.0))
        except broker_errors:
            return False

    try:
        wait_for(lambda: not worker.alive() or answers(), 60, interval=0.5, message="the worker to answer a ping")
        with queued_for_real() as app, app.connection_for_write(broker_url) as conn, conn.Producer() as producer:
            app.send_task("detection.sweep", countdown=600, producer=producer)
        wait_for(lambda: broker.hlen("unacked") == 1, 30, message="the worker to hold its countdown task")
        time.sleep(0.5)  # back in BRPOP, waiting for more

        redis.restart(down_seconds=1)

        wait_for(lambda: not worker.alive() or answers(), 60, interval=0.5,
                 message="the worker to answer again after the restart")
        assert worker.alive(), worker.log_tail()
    finally:
        pinger.close()
        broker.close()
        worker.stop()
        redis.close()
