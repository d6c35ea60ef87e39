"""One run: the camera lock, the shot, Redis or the spool, then the spool's backlog.

From the moment the capture returns until Redis confirms the write, the shot is held by
the run's guard, which keeps it in the spool however the run ends: a Redis failure, a stop
signal, the deadline, or any exception at all, while the camera closes, while --output is
written or while the shot is stored.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from . import camera, delivery, keeping, status, store
from .config import Config
from .errors import Interrupted, SnapError, SpoolError, WriteError, describe
from .guard import Guard, Step
from .locks import CameraLock
from .shot import NO_LUX, Shot, shot_fields
from .spool import Spooled

log = logging.getLogger("snap")

# The spool's backlog is delivered a bounded batch per run, so that a long one never makes
# a run late for the next: the rest waits for the runs after it.
SPOOL_DELIVERY_MAX_SHOTS = 20
SPOOL_DELIVERY_MAX_SECONDS = 10.0

WAITING = Step("waiting for another run to finish")
WRITING_OUTPUT = Step("writing --output", os.EX_CANTCREAT)

Report = Callable[[dict], None]
# What --verbose shows of a shot's metadata: (name, label, format).
EXPOSURE_FIELDS = (
    ("ExposureTime", "time", lambda us: f"{us / 1000:g} ms"),
    ("AnalogueGain", "analogue gain", "{:.2f}".format),
    ("DigitalGain", "digital gain", "{:.2f}".format),
    ("Lux", "lux", "{:.0f}".format),
    ("ColourTemperature", "colour temperature", "{} K".format),
)


def write_output(path: Path, jpeg) -> None:
    try:
        path.write_bytes(jpeg)
    except OSError as error:
        raise WriteError(f"--output: cannot write {path}: {error.strerror}") from error


def keep_held_shot(guard: Guard, error: BaseException) -> tuple[str, Interrupted | None]:
    """Spool the shot the guard holds: where it is now ("" if none was held), and the stop
    signal that came while it was saved, if one did."""
    stop = None
    while True:
        try:
            return guard.keep_unsaved(), stop
        except SpoolError as spool_error:
            raise SpoolError(f"{describe(error)}; the shot is lost: {spool_error}") from error
        except Interrupted as signal_stop:  # the shot is saved by now, or not begun
            stop = signal_stop


@contextlib.contextmanager
def shot_kept(guard: Guard):
    """Whatever ends the run before Redis confirms the shot keeps it in the spool, and the
    error says where it is; the exit code still tells what went wrong (an exception that is
    no SnapError is an internal error, 70)."""
    try:
        yield
    except BaseException as error:
        kept, stop = keep_held_shot(guard, error)
        if stop is not None:
            raise stop.reworded(f"{stop}{kept}") from error
        if not kept or not isinstance(error, (Exception, Interrupted)):
            raise
        if isinstance(error, (SnapError, Interrupted)):
            raise error.reworded(f"{error}{kept}") from error
        raise SnapError(f"{describe(error)}{kept}") from error


def hold(guard: Guard, shot: Shot, config: Config, dry_run: bool) -> dict[str, Any]:
    """The shot's fields, held by the guard before anything else is done with them."""
    fields = shot_fields(shot, config.camera_name, config.camera_metadata)
    expires_at = shot.timestamp + config.image_expiry
    guard.hold(None if dry_run else Spooled(fields, config.image_key_prefix, expires_at))
    if fields["lux"] == NO_LUX:
        log.info("this camera gives no Lux reading: lux stored as %d", NO_LUX)
    for name in config.camera_metadata:
        if name not in shot.metadata:
            log.warning("the camera reported no %s metadata", name)
    return fields


def store_shot(config: Config, guard: Guard, connecting: store.Connecting, fields: dict[str, Any]):
    """Store the shot and return (client, key); the guard lets go of it once Redis has it."""
    guard.step(store.STORING)
    try:
        client = connecting.client()
        key = store.store(client, config, fields, config.image_expiry)
    except SnapError as error:
        raise error.reworded(f"not stored: {error}") from error
    guard.release(key, fields["timestamp"])
    return client, key


def deliver_backlog(client, config: Config, guard: Guard) -> None:
    guard.step(store.DELIVERING)
    spool = guard.spool
    try:
        with spool.locked(wait=0) as holding:
            if holding:  # else another run is delivering it
                delivery.deliver(
                    spool,
                    lambda fields, key_prefix, ttl: store.store(
                        client, config, fields, ttl, key_prefix
                    ),
                    config.image_expiry,
                    SPOOL_DELIVERY_MAX_SHOTS,
                    SPOOL_DELIVERY_MAX_SECONDS,
                )
                keeping.trim(spool)  # a healthy run cleans what killed runs left too
    except SnapError as error:
        log.warning("spool delivery stopped: %s; %s left", error, spool.summary())


def skip_dark(config, guard, dark: camera.TooDark, dry_run, report, started: float) -> int:
    """Too dark for MIN_LUX: nothing taken or stored, and the run succeeds."""
    seconds = round(time.monotonic() - started, 3)
    report({"key": None, "skipped": str(dark), "lux": dark.lux, "seconds": seconds})
    if not dry_run:
        status.record_dark(config, guard)
    return os.EX_OK


def exposure(metadata: dict) -> str:
    """The picture's exposure as the camera reports it, for --verbose."""
    parts = []
    for name, label, show in EXPOSURE_FIELDS:
        value = metadata.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            parts.append(f"{label} {show(value)}")
    return "exposure: " + (", ".join(parts) or "not reported by this camera")


def run_shot(
    config: Config,
    guard: Guard,
    report: Report,
    output: Path | None = None,
    dry_run: bool = False,
    verbose: bool = False,
) -> int:
    """Take the shot, store it (unless dry_run), report it, deliver the backlog."""
    started = time.monotonic()
    connecting = None
    if not dry_run:
        guard.spool.prepare()
        connecting = store.Connecting(config)
    guard.step(WAITING)
    fields: dict[str, Any] = {}

    def on_capture(shot: Shot) -> None:
        fields.update(hold(guard, shot, config, dry_run))

    with shot_kept(guard):
        try:
            with CameraLock(config.lock_dir, config.camera_num, config.lock_timeout):
                shot = camera.take_shot(
                    config, guard, verbose, on_capture, connecting and connecting.start
                )
        except camera.TooDark as dark:
            return skip_dark(config, guard, dark, dry_run, report, started)
        log.debug("%s", exposure(shot.metadata))
        output_error = None
        if output is not None:
            guard.step(WRITING_OUTPUT)
            try:
                write_output(output, shot.jpeg)
            except WriteError as error:
                output_error = error
                log.error("%s", error)
        client, key = (None, None) if dry_run else store_shot(config, guard, connecting, fields)
    report(
        {
            "key": key,
            "timestamp": shot.timestamp,
            "bytes": len(shot.jpeg),
            "lux": fields.get("lux"),
            "ttl": None if key is None else config.image_expiry,
            "seconds": round(time.monotonic() - started, 3),
            "profile": shot.profile or None,
            "metadata": shot.metadata,
        }
    )
    exit_code = output_error.exit_code if output_error else os.EX_OK
    if client is not None:
        deliver_backlog(client, config, guard)
        status.record_stored(config, guard, client, key, shot.timestamp, exit_code)
    return exit_code
