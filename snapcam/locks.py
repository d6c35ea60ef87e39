"""Lock files: one way to open them, one bounded wait for them, and the per-camera lock.

A lock file is shared by every user whose runs use it (a root test shot, the timer's user, a
second service), so it is created writable by all. It is opened without following a symbolic
link and without blocking (a FIFO planted under its name would hang the run), and it must be
a regular file with one link: anything else is no lock file of snap's, and is not written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Callable

from .errors import TemporaryFailure, WriteError

# How often a run waiting for a lock tries again.
POLL_SECONDS = 0.05


class LockFileError(WriteError):
    """A lock file that cannot be opened, or is no lock file; `reason` says which."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def open_or_create(path: Path) -> int:
    """The descriptor of `path`, created if missing. An existing file is opened without
    O_CREAT, which a sticky directory (/run/lock) refuses for another user's file, and
    read-only when it cannot be opened for writing: flock does not need more."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return os.open(path, os.O_RDWR | flags)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # past the umask
        return fd
    except PermissionError:
        return os.open(path, os.O_RDONLY | flags)


def open_checked(path: Path) -> int:
    """The lock file's descriptor; LockFileError for a path that is no lock file."""
    try:
        fd = open_or_create(path)
    except OSError as error:
        reason = "a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise LockFileError(f"cannot open lock file {path}: {reason}", reason) from error
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(fd)
        reason = "a hard link" if stat.S_ISREG(status.st_mode) else "not a regular file"
        raise LockFileError(f"cannot use lock file {path}: {reason}; remove it", reason)
    return fd


def acquire(fd: int, seconds: float, on_wait: Callable[[], None] | None = None) -> bool:
    """Take the exclusive flock on fd within `seconds` (0: one try); whether it was taken.
    on_wait() is called once, when the lock is found held."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            if on_wait is not None:
                on_wait()
                on_wait = None
            time.sleep(POLL_SECONDS)


class CameraLock:
    """One run per camera: an flock the kernel releases if its holder dies."""

    def __init__(self, lock_dir: Path, camera_num: int, timeout: float):
        self.path = lock_dir / f"snap-camera{camera_num}.lock"
        self.timeout = timeout
        self.camera_num = camera_num
        self.fd = -1

    def __enter__(self) -> CameraLock:
        self.fd = open_checked(self.path)
        if not acquire(self.fd, self.timeout):
            holder = self.holder()
            os.close(self.fd)
            raise TemporaryFailure(
                f"camera {self.camera_num} is still in use by another snap run "
                f"(pid {holder}) after LOCK_TIMEOUT={self.timeout:g} s"
            )
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
