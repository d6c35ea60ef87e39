"""Failures that end a run, each with its exit code (sysexits.h, as os.EX_*)."""

from __future__ import annotations

import os

EXIT_CODES = (
    (
        os.EX_OK,
        "the shot was stored (or captured, with --dry-run, or skipped as darker than MIN_LUX)",
    ),
    (
        1,
        "--status: a camera stored no shot within --stale seconds, or its status is unreadable "
        "or dated ahead of this clock, or no camera has a status",
    ),
    (os.EX_USAGE, "bad command line"),
    (
        os.EX_UNAVAILABLE,
        "camera unavailable: none detected, busy, failed or hung; or picamera2, redis, "
        "environs or redis-cli missing or failing to import",
    ),
    (os.EX_SOFTWARE, "internal error: please report it with the --verbose output"),
    (
        os.EX_CANTCREAT,
        "SPOOL_DIR, the camera's lock file, the --output file or a unit file cannot be written",
    ),
    (
        os.EX_TEMPFAIL,
        "Redis unavailable or refused the write (shot spooled), or camera still locked",
    ),
    (
        os.EX_NOPERM,
        "permission refused: Redis authentication or ACL (shot spooled), or installing not as root",
    ),
    (os.EX_CONFIG, "invalid configuration, or a python the timer could not run snap with"),
)


class SnapError(Exception):
    """A failure reported as one line and an exit code; the line ends with next_step, what
    to do about it, when there is one."""

    exit_code = os.EX_SOFTWARE

    def __init__(self, message: str, next_step: str = ""):
        super().__init__(message)
        self.next_step = next_step

    def line(self) -> str:
        return f"{self}; {self.next_step}" if self.next_step else str(self)

    def reworded(self, message: str) -> SnapError:
        """The same failure, told as `message`: same exit code, same next step."""
        return type(self)(message, self.next_step)


class UsageError(SnapError):
    exit_code = os.EX_USAGE


class ConfigError(SnapError):
    exit_code = os.EX_CONFIG


class Unavailable(SnapError):
    """Something snap needs is not there: a camera, a package, a program."""

    exit_code = os.EX_UNAVAILABLE


class CameraError(Unavailable):
    """No camera, a busy one, or one that failed or hung."""


class WriteError(SnapError):
    """SPOOL_DIR, the camera's lock file, the --output file or a unit file cannot be written."""

    exit_code = os.EX_CANTCREAT


class SpoolError(WriteError):
    """The spool could not keep a shot."""


class TemporaryFailure(SnapError):
    """Redis unavailable or refusing the write, or the camera still locked: the next run
    may succeed."""

    exit_code = os.EX_TEMPFAIL


class ShotRefused(TemporaryFailure):
    """Redis is reachable but refused this one shot (too big, out of memory, a bad value):
    a spooled shot behind it may still be delivered."""


class PermissionRefused(SnapError):
    """Redis authentication or ACL, or installing not as root."""

    exit_code = os.EX_NOPERM


class Interrupted(BaseException):
    """A stop signal: unwinds like KeyboardInterrupt, closing the camera on the way."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def reworded(self, message: str) -> Interrupted:
        return Interrupted(message, self.exit_code)


def describe(error: BaseException) -> str:
    """An error as the one line snap prints: its own words for snap's errors, the
    exception's type too for anything else (a bug)."""
    if isinstance(error, (SnapError, Interrupted)):
        return str(error)
    return f"unexpected {type(error).__name__}: {error}"
