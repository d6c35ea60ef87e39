"""Failures that end a run, each with its exit code (sysexits.h, as os.EX_*)."""

from __future__ import annotations

import os

EXIT_CODES = (
    (os.EX_OK, "the shot was stored"),
    (os.EX_USAGE, "bad command line"),
    (os.EX_UNAVAILABLE, "camera unavailable: none detected, busy, failed or hung"),
    (os.EX_SOFTWARE, "internal error: please report it with the --verbose output"),
    (os.EX_CANTCREAT, "SPOOL_DIR, the --output file or a unit file cannot be written"),
    (
        os.EX_TEMPFAIL,
        "Redis unavailable or refused the write (shot spooled), or camera still locked",
    ),
    (os.EX_NOPERM, "permission refused: Redis authentication or ACL, or installing not as root"),
    (os.EX_CONFIG, "invalid configuration"),
)


class SnapError(Exception):
    """A failure reported as one line and an exit code."""

    exit_code = os.EX_SOFTWARE


class UsageError(SnapError):
    exit_code = os.EX_USAGE


class ConfigError(SnapError):
    exit_code = os.EX_CONFIG


class CameraError(SnapError):
    exit_code = os.EX_UNAVAILABLE


class OutputError(SnapError):
    exit_code = os.EX_CANTCREAT


class SpoolError(SnapError):
    exit_code = os.EX_CANTCREAT


class RedisUnavailable(SnapError):
    exit_code = os.EX_TEMPFAIL


class RedisDenied(SnapError):
    exit_code = os.EX_NOPERM


class LockError(SnapError):
    exit_code = os.EX_TEMPFAIL  # the next run will find the camera free


class PermissionRefused(SnapError):
    exit_code = os.EX_NOPERM


class UnitWriteError(SnapError):
    exit_code = os.EX_CANTCREAT


class Interrupted(BaseException):
    """A stop signal: unwinds like KeyboardInterrupt, closing the camera on the way."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
