"""Which Celery worker this process belongs to."""

import os

# The worker's main process: anomalyhub.celery, the -A module, imports this module before the
# prefork pool forks, so its pool processes share it, and a restarted worker has a new one.
# os.getppid() was that only under prefork; under the solo pool it was the worker's parent, the
# same after a restart.
WORKER_PID = os.getpid()
