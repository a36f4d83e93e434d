from celery import shared_task

from . import replays


# A replay lasts minutes (a trading day of ticks at 60x: 6.5 min), past the default time limits.
@shared_task(name="frontend.replay_demo", acks_late=False, soft_time_limit=3300, time_limit=3500)
def replay_demo(series_id: int, organization_id: int, file_key: str, speed: float) -> None:
    replays.run_replay(series_id, organization_id, file_key, speed)
