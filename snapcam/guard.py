"""Run guards: the watchdog that ends a hung run, and stop signals.

One Guard per run is handed to whatever needs it: the camera and store tell it the Step they
are in (a value carrying the exit code and the next step if the run hangs there), and the
shot taken is held by the guard until Redis has it, so that every way a run can end (an
error, a stop signal, the deadline) keeps it in the spool.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Callable, NamedTuple

from . import keeping
from .ending import flush_streams
from .errors import Interrupted

if TYPE_CHECKING:
    from .spool import Spool, Spooled

log = logging.getLogger("snap")


class Step(NamedTuple):
    """What a run is doing: a run that hangs here ends with exit_code, and the hint."""

    name: str
    exit_code: int = os.EX_TEMPFAIL
    hint: str = ""


STARTING_RUN = Step("starting")
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

    def __init__(self, spool: Spool | None = None):
        self.spool = spool  # set once the configuration names it
        self.current_step = STARTING_RUN
        self.started = time.monotonic()
        self.unsaved: Spooled | None = None
        self.kept = ""
        self.stored = False  # Redis has this run's shot: the deadline no longer fails the run
        self.stored_as = ("", 0)  # its key and timestamp
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        self.saving_until = 0.0
        # The camera has handed over a picture the guard does not hold yet: a stop signal
        # waits for hold(), as it waits for a save.
        self.captured = False
        self.pending_stop: Interrupted | None = None
        self.finishing = False  # the run's outcome is decided: a stop signal is only noted
        self.deadline = math.inf  # time.monotonic() at which the run is ended
        self.on_expire: Callable[[str, int], None] | None = None  # (message, exit code)

    def step(self, step: Step) -> None:
        """Now in step; --verbose shows each with its time since the run started."""
        self.current_step = step
        log.debug("%.2f s: %s", time.monotonic() - self.started, step.name)

    def picture_taken(self) -> None:
        """The camera is handing over a picture: from now a stop signal waits for hold()."""
        self.captured = True

    def hold(self, shot: Spooled | None) -> None:
        """The shot to spool if the run is cut short (None: a dry run keeps nothing); a stop
        signal that came since the capture ends the run now that the shot is held."""
        with self.lock:
            self.unsaved = shot
            self.captured = False
        self.raise_pending_stop()

    def release(self, key: str = "", timestamp: int = 0) -> None:
        """Redis has the shot, under `key`."""
        with self.lock:
            self.unsaved = None
            self.stored = True
            self.stored_as = (key, timestamp)

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
                shot, self.unsaved = self.unsaved, None
                keeping.keep(self.spool, shot)
                self.kept = f"; kept in spool ({self.spool.summary()})"
            finally:
                self.saving_until = 0.0
                if alarm_left:
                    left = alarm_left - (time.monotonic() - started)
                    signal.setitimer(signal.ITIMER_REAL, max(left, LAST_RESORT_SECONDS))
                else:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        # A stop signal that came during the save ends the run now that the shot is safe.
        self.raise_pending_stop()
        return self.kept

    def raise_pending_stop(self) -> None:
        stop, self.pending_stop = self.pending_stop, None
        if stop is not None and threading.current_thread() is threading.main_thread():
            raise stop

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
        message = reason or f"run timed out after {seconds:g} s while {step.name}"
        if not exit_code and self.stored:  # cut short after the shot was stored
            log.warning("%s; the shot was stored", message)
            if self.on_expire is not None:
                self.on_expire(message, os.EX_OK)
            self.exit(os.EX_OK)
        exit_code = exit_code or step.exit_code
        try:
            message += self.keep_unsaved()
        except Exception as error:  # in this thread, nothing else would report it
            message += f"; the shot is lost: {error}"
        if not reason and step.hint:
            message += f"; {step.hint}"
        log.error("%s", message)
        if self.on_expire is not None:
            self.on_expire(message, exit_code)
        self.exit(exit_code)

    @staticmethod
    def exit(exit_code: int) -> None:
        """End the process now; standard streams closed, full or broken change nothing."""
        flush_streams()
        os._exit(exit_code)

    def stop_on_signal(self, signal_number: int, frame) -> None:
        exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        # If the main thread is stuck where this exception cannot reach, end the run anyway.
        self.start(LAST_RESORT_SECONDS, f"stopped by {name}", exit_code)
        stop = Interrupted(f"stopped by {name}", exit_code)
        if self.saving_until or self.finishing or self.captured:
            # Not raised mid-save, between a capture and its hold(), nor while the last line
            # is written (blocking the signal would not do: another thread may take it, and
            # Python runs the handler in the main thread all the same).
            self.pending_stop = stop
            return
        raise stop

    def exit_code(self, decided: int) -> int:
        """The run's exit code: 128+n if a stop signal came once it was decided."""
        return self.pending_stop.exit_code if self.pending_stop else decided

    def catch_stop_signals(self) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, self.stop_on_signal)
