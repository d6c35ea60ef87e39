"""Delivering the spool's backlog: the oldest shots first, a bounded batch per run."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from .errors import ShotRefused
from .spool import Spool, Unusable, shot_time

log = logging.getLogger("snap")


def deliver(
    spool: Spool,
    put: Callable[[dict[str, Any], int], str],
    expiry: int,
    max_shots: int,
    max_seconds: float,
) -> None:
    """Hand the oldest shots to put(fields, ttl) with what is left of their TTL, a bounded
    batch per run; the caller holds the lock. Shots past their expiry are discarded and
    entries that cannot be delivered set aside, neither counted in the batch; a shot Redis
    refuses stays for a later run, and the shots behind it are delivered."""
    started = time.monotonic()
    tried = 0
    for entry in spool.entries():
        if tried >= max_shots or time.monotonic() - started > max_seconds:
            break
        # Never longer than IMAGE_EXPIRY, even if the clock went back since the capture.
        ttl = min(entry.timestamp + expiry - int(time.time()), expiry)
        if ttl <= 0:
            if not spool.remove(entry):
                spool.set_aside(entry, "past its expiry, it cannot be removed")
            else:
                log.info(
                    "discarded the spooled shot taken %s: past its expiry",
                    shot_time(entry.timestamp),
                )
            continue
        try:
            fields = spool.read(entry)
        except Unusable as why:
            spool.set_aside(entry, str(why))
            continue
        tried += 1
        try:
            key = put(fields, ttl)
        except ShotRefused as error:
            log.warning("spooled shot %s kept for later: %s", entry.jpeg_path.name, error)
            continue
        spool.remove(entry)  # if it stays, its shot_id keeps it from being stored twice
        log.info("delivered the spooled shot %s (expires in %d s)", key, ttl)
