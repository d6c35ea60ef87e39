"""Delivering the spool's backlog: the oldest shots first, a bounded batch per run."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from .errors import ShotRefused
from .spool import Entry, Spool, Spooled, Unusable, shot_time

log = logging.getLogger("snap")


def time_to_live(entry: Entry, spooled: Spooled, expiry: int) -> int:
    """Seconds left of the shot's own expiry (the delivering run's IMAGE_EXPIRY for formats
    that did not record it); never more than it was given, even if the clock went back."""
    expires_at = spooled.expires_at or entry.timestamp + expiry
    given = expires_at - entry.timestamp
    return min(expires_at - int(time.time()), given)


def deliver(
    spool: Spool,
    put: Callable[[dict[str, Any], str | None, int], str],
    expiry: int,
    max_shots: int,
    max_seconds: float,
) -> None:
    """Hand the oldest shots to put(fields, key_prefix, ttl) with what is left of their TTL, a
    bounded batch per run; the caller holds the lock. Shots past their expiry are discarded
    and entries that cannot be delivered set aside, neither counted in the batch; a shot Redis
    refuses stays for a later run, and the shots behind it are delivered."""
    started = time.monotonic()
    tried = 0
    for entry in spool.entries():
        if tried >= max_shots or time.monotonic() - started > max_seconds:
            break
        try:
            spooled = spool.read(entry)
        except Unusable as why:
            spool.set_aside(entry, str(why))
            continue
        ttl = time_to_live(entry, spooled, expiry)
        if ttl <= 0:
            if not spool.remove(entry):
                spool.set_aside(entry, "past its expiry, it cannot be removed")
            else:
                log.info(
                    "discarded the spooled shot taken %s: past its expiry",
                    shot_time(entry.timestamp),
                )
            continue
        tried += 1
        try:
            key = put(spooled.fields, spooled.key_prefix, ttl)
        except ShotRefused as error:
            log.warning("spooled shot %s kept for later: %s", entry.jpeg_path.name, error)
            continue
        spool.remove(entry)  # if it stays, its shot_id keeps it from being stored twice
        log.info("delivered the spooled shot %s (expires in %d s)", key, ttl)
