"""Typed readers for settings from the environment. Invalid values stop start-up."""

import math
import os
from datetime import UTC, datetime
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_datetime(name: str, default: str) -> datetime:
    """An ISO-8601 time; without an offset it is UTC."""
    raw = os.environ.get(name) or default
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an ISO-8601 time such as 1970-01-01T00:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker secrets) which wins."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, default)


def usable_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process may use: its CPU set, capped by a cgroup CPU quota rounded up (a
    container's `--cpus 1.5` gives 2). os.cpu_count() and the CPU set both see the host's cores
    under a quota, and sizing process pools by them oversubscribes the container."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(Path(cgroup_root))
    return min(cores, max(1, math.ceil(quota))) if quota else cores


def _cgroup_quota(root: Path) -> float | None:
    """CPUs of quota per period: cgroup v2 `cpu.max` ("max 100000" = none), else v1's
    cpu.cfs_quota_us / cpu.cfs_period_us (-1 = none); None when there is no quota or no cgroup."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max"
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
