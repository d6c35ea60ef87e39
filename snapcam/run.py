"""One run: the camera lock, the shot, Redis or the spool, then the spool's backlog.

From the moment the capture returns until Redis confirms the write, the shot is held by
the run's guard, which keeps it in the spool however the run ends.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from . import camera, status, store
from .config import Config
from .errors import Interrupted, SnapError, SpoolError, WriteError
from .guard import CameraLock, Guard

log = logging.getLogger("snap")

SPOOL_DELIVERY_MAX_SHOTS = 20
SPOOL_DELIVERY_MAX_SECONDS = 10.0


def write_output(path, jpeg) -> None:
    try:
        path.write_bytes(jpeg)
    except OSError as error:
        raise WriteError(f"--output: cannot write {path}: {error.strerror}") from error


def store_or_spool(config: Config, guard: Guard, fields: dict[str, Any]):
    """Store the shot and return (client, key); if Redis does not take it, spool it and say so."""
    guard.hold(fields)
    guard.step("storing in Redis")
    try:
        client = store.redis_client(config)
        key = store.store(client, config, fields, config.image_expiry)
    except SnapError as error:
        try:
            kept = guard.keep_unsaved()
        except SpoolError as spool_error:
            raise SpoolError(f"not stored: {error}; the shot is lost: {spool_error}") from error
        raise type(error)(f"not stored: {error}{kept}", error.next_step) from error
    except Interrupted as stop:
        raise Interrupted(f"{stop}{guard.keep_unsaved()}", stop.exit_code) from stop
    guard.release()
    return client, key


def deliver_backlog(client, config: Config, guard: Guard) -> None:
    guard.step("delivering the spool")
    spool = guard.spool
    try:
        with spool.locked(wait=False) as holding:
            if holding:  # else another run is delivering it
                spool.deliver(
                    lambda fields, ttl: store.store(client, config, fields, ttl),
                    config.image_expiry,
                    SPOOL_DELIVERY_MAX_SHOTS,
                    SPOOL_DELIVERY_MAX_SECONDS,
                )
    except SnapError as error:
        log.warning("spool delivery stopped: %s; %s left", error, spool.summary())


def run_shot(config: Config, guard: Guard, args, report) -> int:
    """Take the shot, store it (unless --dry-run), report it, deliver the backlog."""
    started = time.monotonic()
    if not args.dry_run:
        guard.spool.prepare()
    guard.step("waiting for another run to finish")
    try:
        with CameraLock(config):
            shot = camera.take_shot(config, guard, args.verbose)
    except camera.TooDark as dark:
        seconds = round(time.monotonic() - started, 3)
        report(args, {"key": None, "skipped": str(dark), "lux": dark.lux, "seconds": seconds})
        if not args.dry_run:
            status.record_dark(config, guard)
        return os.EX_OK
    fields = store.shot_fields(shot, config)
    output_error = None
    if args.output is not None:
        try:
            write_output(args.output, shot.jpeg)
        except WriteError as error:
            output_error = error
            log.error("%s", error)
    client, key = (None, None) if args.dry_run else store_or_spool(config, guard, fields)
    report(
        args,
        {
            "key": key,
            "timestamp": shot.timestamp,
            "bytes": len(shot.jpeg),
            "lux": fields.get("lux"),
            "ttl": None if key is None else config.image_expiry,
            "seconds": round(time.monotonic() - started, 3),
            "metadata": shot.metadata,
        },
    )
    exit_code = output_error.exit_code if output_error else os.EX_OK
    if client is not None:
        deliver_backlog(client, config, guard)
        status.record_stored(config, guard, client, key, shot.timestamp, exit_code)
    return exit_code
