"""Adding a shot to the spool, whole or not at all, and trimming the spool to its limit.

The files written and their names are the spool's format (spool.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from pathlib import Path

from .spool import LOCK_WAIT_SECONDS, Entry, Spool, Spooled, file_size, shot_time, spooled_to_json

log = logging.getLogger("snap")

# A file left by a killed run: old enough, it is no longer one being written.
ORPHAN_GRACE_SECONDS = 3600
# A full disk or quota: older shots make room for the new one.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def create_new(path, flags: int) -> int:
    """An opener for open(): a file of its own, never one a symbolic link planted under its
    name points to."""
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: a crash never leaves a half file under `path`, and a
    failed write (a full disk) leaves no temporary file either."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "wb", opener=create_new) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def add(spool: Spool, spooled: Spooled) -> None:
    """Write one entry, whole or not at all; OSError if it cannot."""
    name = f"{spooled.fields['timestamp']}-{os.getpid()}-{os.urandom(3).hex()}"
    jpeg_path = spool.directory / f"{name}.jpg"
    write_atomically(jpeg_path, spooled.fields["image_data"])
    try:
        write_atomically(spool.directory / f"{name}.json", spooled_to_json(spooled))
    except BaseException:
        with contextlib.suppress(OSError):
            jpeg_path.unlink()
        raise
    directory = os.open(spool.directory, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def keep(spool: Spool, spooled: Spooled) -> None:
    """Add a shot and trim the spool to its size limit. When the disk is full, the oldest
    shots make room for the new one. Waiting for another run's lock is bounded: past it, the
    shot is added all the same (names never clash), only not trimmed."""
    with spool.locked() as holding:
        if not holding:
            log.warning(
                "the spool is still locked by another run after %g s: "
                "adding this shot without trimming the spool",
                LOCK_WAIT_SECONDS,
            )
        while True:
            try:
                add(spool, spooled)
                break
            except OSError as error:
                older = spool.entries() if holding and error.errno in DISK_FULL else []
                if not older or not drop(spool, older[0], f"spool full ({error.strerror})"):
                    raise spool.failure(error) from error
        if holding:
            trim(spool)


def drop(spool: Spool, entry: Entry, why: str) -> bool:
    """Remove a shot to make room, saying so; whether it is gone."""
    if not spool.remove(entry):
        return False
    log.warning(
        "%s: dropped the shot taken %s (%s)",
        why,
        shot_time(entry.timestamp),
        entry.jpeg_path.name,
    )
    return True


def clean_orphans(orphans: list[Path]) -> list[Path]:
    """Remove the files killed runs left over an hour ago; return the others."""
    left = []
    for path in orphans:
        with contextlib.suppress(OSError):
            if time.time() - path.lstat().st_mtime >= ORPHAN_GRACE_SECONDS:
                path.unlink()
                log.info("removed %s, left unfinished by a run that was killed", path.name)
                continue
        left.append(path)
    return left


def trim(spool: Spool) -> None:
    """Remove old orphans, then drop the oldest shots past SPOOL_MAX_MB, orphans still in
    their grace period counted; the newest shot is always kept."""
    contents = spool.contents()
    orphans = clean_orphans(contents.orphans)
    total = sum(entry.size for entry in contents.entries)
    total += sum(file_size(path) for path in orphans)
    for entry in contents.entries[:-1]:
        if total <= spool.max_bytes:
            break
        total -= entry.size
        drop(spool, entry, f"spool over SPOOL_MAX_MB={spool.max_bytes // 1_000_000}")
