"""One run: the camera lock, the shot, Redis or the spool, then the spool's backlog.

From the moment the capture returns until Redis confirms the write, the shot is held by
the run's guard, which keeps it in the spool however the run ends: a Redis failure, a stop
signal, the deadline, or any exception at all, while the camera closes, while --output is
written or while the shot is stored.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def shot_kept(guard: Guard):
    """Whatever ends the run before Redis confirms the shot keeps it in the spool, and the
    error says where it is; the exit code still tells what went wrong (an exception that is
    no SnapError is an internal error, 70)."""
    try:
        yield
    except BaseException as error:
        stop = None
        while True:
            try:
                kept = guard.keep_unsaved()
                break
            except SpoolError as spool_error:
                raise SpoolError(f"{describe(error)}; the shot is lost: {spool_error}") from error
            except Interrupted as signal_stop:  # the shot is saved by now, or not begun
                stop = signal_stop
        if stop is not None:
            stop.args = (f"{stop}{kept}",)
            raise stop from error
        if not kept or not isinstance(error, (Exception, Interrupted)):
            raise
        if isinstance(error, (SnapError, Interrupted)):
            error.args = (f"{error}{kept}",)
            raise
        raise SnapError(f"{describe(error)}{kept}") from error


def describe(error: BaseException) -> str:
    if isinstance(error, (SnapError, Interrupted)):
        return str(error)
    return f"unexpected {type(error).__name__}: {error}"


def store_shot(config: Config, guard: Guard, connecting: store.Connecting, fields: dict[str, Any]):
    """Store the shot and return (client, key); the guard lets go of it once Redis has it."""
    guard.step("storing in Redis")
    try:
        client = connecting.client()
        key = store.store(client, config, fields, config.image_expiry)
    except SnapError as error:
        error.args = (f"not stored: {error}",)
        raise
    guard.release()
    return client, key


def deliver_backlog(client, config: Config, guard: Guard) -> None:
    guard.step("delivering the spool")
    spool = guard.spool
    try:
        with spool.locked(wait=0) as holding:
            if holding:  # else another run is delivering it
                spool.deliver(
                    lambda fields, ttl: store.store(client, config, fields, ttl),
                    config.image_expiry,
                    SPOOL_DELIVERY_MAX_SHOTS,
                    SPOOL_DELIVERY_MAX_SECONDS,
                )
    except SnapError as error:
        log.warning("spool delivery stopped: %s; %s left", error, spool.summary())


def skip_dark(config: Config, guard: Guard, args, report, dark, started: float) -> int:
    """Too dark for MIN_LUX: nothing taken or stored, and the run succeeds."""
    seconds = round(time.monotonic() - started, 3)
    report(args, {"key": None, "skipped": str(dark), "lux": dark.lux, "seconds": seconds})
    if not args.dry_run:
        status.record_dark(config, guard)
    return os.EX_OK


def run_shot(config: Config, guard: Guard, args, report) -> int:
    """Take the shot, store it (unless --dry-run), report it, deliver the backlog."""
    started = time.monotonic()
    if not args.dry_run:
        guard.spool.prepare()
        connecting = store.Connecting(config)
    guard.step("waiting for another run to finish")
    fields: dict[str, Any] = {}

    def hold(shot: camera.Shot) -> None:
        fields.update(store.shot_fields(shot, config))
        if not args.dry_run:
            guard.hold(fields)

    with shot_kept(guard):
        try:
            with CameraLock(config):
                shot = camera.take_shot(config, guard, args.verbose, on_capture=hold)
        except camera.TooDark as dark:
            return skip_dark(config, guard, args, report, dark, started)
        output_error = None
        if args.output is not None:
            guard.step("writing --output")
            try:
                write_output(args.output, shot.jpeg)
            except WriteError as error:
                output_error = error
                log.error("%s", error)
        client, key = (
            (None, None) if args.dry_run else store_shot(config, guard, connecting, fields)
        )
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
