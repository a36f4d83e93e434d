"""gunicorn settings for the Procfile's `web`: uvicorn workers serving anomalyhub.asgi:application.

gunicorn owns the worker processes: it starts WEB_PROCESSES of them on WEB_BIND, replaces one that
dies, and on SIGTERM gives each GRACE seconds to finish its requests. The default is one process
more than the cores this process may use (joblib reads a container's CPU quota): a process is often
waiting for its GIL while PostgreSQL or another process holds a core, and the extra one fills those
gaps (`make load` on 2 cores, with the earlier daphne processes: 3 against 2 lowered p50 from 32-51
ms to 19-25 ms).
"""

import os

from joblib import cpu_count
from prometheus_client import multiprocess
from uvicorn_worker import UvicornWorker

bind = [os.environ.get("WEB_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WEB_PROCESSES") or cpu_count() + 1)
worker_class = "anomalyhub.gunicorn_conf.Worker"
graceful_timeout = int(os.environ.get("WEB_GRACE_SECONDS", "30"))
keepalive = 5  # seconds an idle keep-alive connection stays open (uvicorn's own default)
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
# gunicorn's control socket lives at one path per user, which every server on the machine would share.
control_socket_disable = True


class Worker(UvicornWorker):
    """uvicorn as documented for gunicorn, without proxy headers: uvicorn would take X-Forwarded-For
    from any local peer; anomalyhub.client_address believes it from TRUSTED_PROXIES only."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "proxy_headers": False, "lifespan": "off"}


def child_exit(server, worker):
    """prometheus_client's multiprocess mode, as its documentation wires it for gunicorn: a dead
    worker's live gauges stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
