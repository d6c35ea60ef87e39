"""Run guards: the watchdog that ends a hung run, stop signals, and the per-camera lock.

One Guard per run is handed to whatever needs it: the camera and store steps name the step
they are in, and the shot taken is held by the guard until Redis has it, so that every way
a run can end (an error, a stop signal, the deadline) keeps it in the spool.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .camera import HUNG_NEXT_STEP
from .errors import Interrupted, TemporaryFailure, WriteError

if TYPE_CHECKING:
    from .config import Config
    from .spool import Spool

log = logging.getLogger("snap")

CAMERA_STEPS = (
    "opening the camera",
    "starting the camera",
    "waiting for exposure to settle",
    "autofocus",
    "capturing",
    "closing the camera",
)
# SIGHUP: a closed terminal or a dropped ssh session ends a run as systemd's SIGTERM does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# After the watchdog's own deadline, the kernel's SIGALRM ends a run whose timer thread
# cannot run; after a stop signal, a run that swallowed the exception ends anyway.
LAST_RESORT_SECONDS = 2
# Keeping a shot (waiting for the spool's lock, then writing) is bounded by this: the
# kernel's SIGALRM is put off until then, so that it never cuts a save short.
SAVE_SECONDS = 15


class Guard:
    """Ends a run still busy at its deadline, even when stuck in C code that no exception
    reaches: a timer thread reports the step that hung, spools the shot held, and exits."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self.current_step = "starting"
        self.unsaved: dict[str, Any] | None = None
        self.kept = ""
        self.stored = False  # Redis has this run's shot: the deadline no longer fails the run
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        self.saving_until = 0.0
        self.pending_stop: Interrupted | None = None
        self.deadline = math.inf  # time.monotonic() at which the run is ended
        self.on_expire: Callable[[str, int], None] | None = None  # (message, exit code)

    def step(self, name: str) -> None:
        self.current_step = name

    def hold(self, fields: dict[str, Any]) -> None:
        """The shot to spool if the run is cut short."""
        with self.lock:
            self.unsaved = fields

    def release(self) -> None:
        """Redis has the shot."""
        with self.lock:
            self.unsaved = None
            self.stored = True

    def keep_unsaved(self) -> str:
        """Spool the shot held, once, whoever gets here first; say where it is."""
        with self.lock:
            if self.unsaved is None:
                return self.kept
            # A stop signal now would cut the shot short on disk: it waits until the shot is
            # safe (stop_on_signal); the kernel's last-resort SIGALRM waits too, within a bound.
            self.saving_until = time.monotonic() + SAVE_SECONDS
            alarm_left, _ = signal.setitimer(signal.ITIMER_REAL, SAVE_SECONDS)
            started = time.monotonic()
            try:
                fields, self.unsaved = self.unsaved, None
                self.spool.keep(fields)
                self.kept = f"; kept in spool ({self.spool.summary()})"
            finally:
                self.saving_until = 0.0
                if alarm_left:
                    left = alarm_left - (time.monotonic() - started)
                    signal.setitimer(signal.ITIMER_REAL, max(left, LAST_RESORT_SECONDS))
                else:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        # A stop signal that came during the save ends the run now that the shot is safe.
        stop, self.pending_stop = self.pending_stop, None
        if stop is not None and threading.current_thread() is threading.main_thread():
            raise stop
        return self.kept

    def start(self, seconds: float, reason: str = "", exit_code: int = 0) -> None:
        """Arm the deadline: after `seconds`, end the run with `reason` (default: the step)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(seconds, self.expire, args=(seconds, reason, exit_code))
        self.timer.daemon = True
        self.timer.start()
        self.deadline = time.monotonic() + seconds
        # Never sooner than the end of a save under way.
        last_resort = max(seconds + LAST_RESORT_SECONDS, self.saving_until - time.monotonic())
        signal.setitimer(signal.ITIMER_REAL, last_resort)

    def expire(self, seconds: float, reason: str, exit_code: int) -> None:
        step = self.current_step
        message = reason or f"run timed out after {seconds:g} s while {step}"
        if not exit_code and self.stored:  # cut short after the shot was stored
            log.warning("%s; the shot was stored", message)
            self.exit(os.EX_OK)
        if not exit_code:
            exit_code = os.EX_UNAVAILABLE if step in CAMERA_STEPS else os.EX_TEMPFAIL
            if step == "writing --output":
                exit_code = os.EX_CANTCREAT
        try:
            message += self.keep_unsaved()
        except Exception as error:  # in this thread, nothing else would report it
            message += f"; the shot is lost: {error}"
        if not reason and step in CAMERA_STEPS:
            message += f"; {HUNG_NEXT_STEP}"
        log.error("%s", message)
        if self.on_expire is not None:
            self.on_expire(message, exit_code)
        self.exit(exit_code)

    @staticmethod
    def exit(exit_code: int) -> None:
        """End the process now; standard streams closed, full or broken change nothing."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(exit_code)

    def stop_on_signal(self, signal_number: int, frame) -> None:
        exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        # If the main thread is stuck where this exception cannot reach, end the run anyway.
        self.start(LAST_RESORT_SECONDS, f"stopped by {name}", exit_code)
        stop = Interrupted(f"stopped by {name}", exit_code)
        if self.saving_until:
            # Not raised mid-save (blocking the signal would not do: another thread may take
            # it, and Python runs the handler in the main thread all the same).
            self.pending_stop = stop
            return
        raise stop

    def catch_stop_signals(self) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, self.stop_on_signal)


class CameraLock:
    """One run per camera: an flock the kernel releases if its holder dies."""

    def __init__(self, config: Config):
        self.path = config.lock_dir / f"snap-camera{config.camera_num}.lock"
        self.timeout = config.lock_timeout
        self.camera_num = config.camera_num
        self.fd = -1

    def open(self) -> int:
        # Shared by every user who may take a shot, so created writable by all; an
        # existing file is opened without O_CREAT, which sticky /run/lock would refuse.
        # Never through a symbolic link, and never blocking on a FIFO.
        flags = os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            return os.open(self.path, os.O_RDWR | flags)
        except FileNotFoundError:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | flags, 0o666)
            os.fchmod(fd, 0o666)
            return fd
        except PermissionError:
            return os.open(self.path, os.O_RDONLY | flags)

    def opened(self) -> int:
        """The lock file's descriptor; a path that is no lock file is refused, not written."""
        try:
            fd = self.open()
        except OSError as error:
            reason = "a symbolic link" if error.errno == errno.ELOOP else error.strerror
            raise WriteError(f"cannot open lock file {self.path}: {reason}") from error
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            os.close(fd)
            kind = "a hard link" if stat.S_ISREG(status.st_mode) else "not a regular file"
            raise WriteError(f"cannot use lock file {self.path}: {kind}; remove it")
        return fd

    def __enter__(self) -> CameraLock:
        self.fd = self.opened()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TemporaryFailure(
                        f"camera {self.camera_num} is still in use by another snap run "
                        f"(pid {self.holder()}) after LOCK_TIMEOUT={self.timeout:g} s"
                    ) from None
                time.sleep(0.1)
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # opened read-only: locked all the same, only the pid goes unrecorded
        return self

    def holder(self) -> str:
        return os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"

    def __exit__(self, *exc_info) -> None:
        os.close(self.fd)  # releases the flock


def open_lock(path: Path) -> int:
    """A lock file shared by every user whose runs use it (a root test shot, a second
    service): created writable by all; an existing file is opened without O_CREAT, which a
    sticky directory would refuse, and read-only when it cannot be opened for writing, which
    flock does not need; never through a symlink."""
    try:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)
        return fd
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
