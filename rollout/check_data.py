"""Key counts of MoonTV's storage, recorded by ``check pre`` and compared by ``check post``.

The groups follow the data MoonTV keeps (``../shared`` runtime notes): the admin config, the
``sys:`` keys (users, migrations), every user's keys and among them the favourite lists.
"""

from __future__ import annotations

from pathlib import Path

import redis

GROUPS = {"admin:config": "admin:config", "sys:*": "sys:*", "u:*": "u:*", "u:*:fav": "u:*:fav"}


def key_counts(url: str, timeout: float = 10.0) -> dict[str, int]:
    """``total`` and one count per group of :data:`GROUPS`."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        counts = {"total": int(client.dbsize())}
        for name, pattern in GROUPS.items():
            counts[name] = sum(1 for _ in client.scan_iter(match=pattern, count=500))
    except redis.RedisError as exc:
        raise OSError(f"storage {_where(url)}: {exc}") from None
    finally:
        client.close()
    return counts


def _where(url: str) -> str:
    """host:port of a storage URL, without its password."""
    return url.rsplit("@", 1)[-1].removeprefix("redis://")


def state_file(state_dir: Path, stack: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir / f"{stack}-key-counts.json"


def compare(before: dict[str, int], after: dict[str, int], tolerance: float) -> list[str]:
    """Groups that shrank by more than ``tolerance`` (a fraction); the admin config may not go."""
    problems = []
    for name, old in before.items():
        new = after.get(name, 0)
        floor = old - int(old * tolerance)
        if name == "admin:config" and old and not new:
            problems.append("admin:config is gone")
        elif new < floor:
            problems.append(f"{name}: {old} -> {new} (more than {tolerance:.0%} lost)")
    return problems
