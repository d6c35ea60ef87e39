"""The spool: shots Redis did not take, kept on disk until a later run delivers them.

On-disk format, version 2, in SPOOL_DIR:
  NAME.jpg             the JPEG, exactly the bytes of image_data
  NAME.json            {"version": 2, "fields": {...}}: every other field of the hash
  .NAME.jpg.partial,   a file being written: temporary file, fsync, rename; the .json is
  .NAME.json.partial   renamed last, so an entry is whole once NAME.json exists
  NAME.json.unreadable the fields of a shot that cannot be delivered, set aside beside its JPEG
  .lock                flock held by the one run that adds, trims or delivers; writable by all
  .status-CAMERA       no shot: a camera's status, kept for Redis (see status.py)
NAME is <capture unix seconds>-<pid>-<6 hex digits>: oldest first by name's number.
A .partial file, or a NAME.jpg without NAME.json, left by a run that was killed is removed
once it is an hour old (by mtime); until then it counts against SPOOL_MAX_MB.
Version 1 (snap 1.0) wrote the fields object itself as NAME.json; it is read as well.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ShotRefused, SpoolError
from .guard import open_lock
from .store import field_problem

log = logging.getLogger("snap")

FORMAT_VERSION = 2
# Waiting for another run to release the spool is bounded: a shot is added without it.
LOCK_WAIT_SECONDS = 5.0
# A file left by a killed run: old enough, it is no longer one being written.
ORPHAN_GRACE_SECONDS = 3600
# A full disk or quota: older shots make room for the new one.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
ENTRY_NAME = re.compile(r"\d+-[^.]*")


def size_text(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.0f} kB"


def shot_time(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


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


def fields_from_json(text: str) -> dict[str, Any]:
    """The fields of a .json of either version; ValueError if it holds none."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not an object")
    if "version" not in document:  # version 1: the fields themselves
        return document
    if document["version"] != FORMAT_VERSION or not isinstance(document.get("fields"), dict):
        raise ValueError(f"unknown spool format {document['version']!r}")
    return document["fields"]


def file_size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.lstat().st_size
    return 0


class Unusable(Exception):
    """Why a spooled entry cannot be delivered."""


@dataclass(frozen=True)
class Entry:
    """One shot in the spool: its .json exists (its JPEG may not, if it was damaged)."""

    jpeg_path: Path
    fields_path: Path
    timestamp: int

    @property
    def size(self) -> int:
        return file_size(self.jpeg_path) + file_size(self.fields_path)


@dataclass
class Contents:
    """What a look at the directory finds."""

    entries: list[Entry] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    set_aside: list[Path] = field(default_factory=list)


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes

    def failure(self, error: OSError) -> SpoolError:
        return SpoolError(f"cannot write to SPOOL_DIR {self.directory}: {error.strerror}")

    def prepare(self) -> None:
        """Create the directory, so that a shot can be kept before the camera is used."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SpoolError(
                f"cannot create SPOOL_DIR {self.directory}: {error.strerror}"
            ) from error
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SpoolError(f"SPOOL_DIR {self.directory} is not writable")

    def state(self) -> str:
        """What --check says of the spool, creating nothing."""
        if self.directory.is_dir():
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise SpoolError(f"SPOOL_DIR {self.directory} is not writable")
            contents = self.contents()
            state = f"{self.summary(contents)} waiting"
            if contents.orphans:
                size = sum(file_size(path) for path in contents.orphans)
                state += (
                    f"; {len(contents.orphans)} unfinished file(s) of killed runs, "
                    f"{size_text(size)}, removed once an hour old"
                )
            if contents.set_aside:
                state += f"; {len(contents.set_aside)} set aside (*.json.unreadable)"
            return state
        existing = next(parent for parent in self.directory.parents if parent.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise SpoolError(
                f"cannot create SPOOL_DIR {self.directory}: {existing} is not writable"
            )
        return "created by the first shot"

    @contextlib.contextmanager
    def locked(self, wait: float | None = None):
        """Yield whether this run holds the spool: one run at a time adds, trims or delivers.
        Waits at most `wait` seconds (LOCK_WAIT_SECONDS) for another run to release it."""
        wait = LOCK_WAIT_SECONDS if wait is None else wait
        lock_path = self.directory / ".lock"
        try:
            fd = open_lock(lock_path)
        except OSError as error:
            log.warning("cannot open the spool's lock %s: %s", lock_path, error.strerror)
            yield False
            return
        try:
            deadline = time.monotonic() + wait
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    if not told:
                        log.info("waiting up to %g s for another run to release the spool", wait)
                        told = True
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)

    def add(self, fields: dict[str, Any]) -> None:
        """Write one entry, whole or not at all; OSError if it cannot."""
        name = f"{fields['timestamp']}-{os.getpid()}-{os.urandom(3).hex()}"
        other_fields = {key: value for key, value in fields.items() if key != "image_data"}
        document = json.dumps({"version": FORMAT_VERSION, "fields": other_fields}, default=str)
        jpeg_path = self.directory / f"{name}.jpg"
        write_atomically(jpeg_path, fields["image_data"])
        try:
            write_atomically(self.directory / f"{name}.json", document.encode())
        except BaseException:
            with contextlib.suppress(OSError):
                jpeg_path.unlink()
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def keep(self, fields: dict[str, Any]) -> None:
        """Add a shot and trim the spool to its size limit. When the disk is full, the oldest
        shots make room for the new one. Waiting for another run's lock is bounded: past
        it, the shot is added all the same (names never clash), only not trimmed."""
        with self.locked() as holding:
            if not holding:
                log.warning(
                    "the spool is still locked by another run after %g s: "
                    "adding this shot without trimming the spool",
                    LOCK_WAIT_SECONDS,
                )
            while True:
                try:
                    self.add(fields)
                    break
                except OSError as error:
                    older = self.entries() if holding and error.errno in DISK_FULL else []
                    if not older or not self.dropped(older[0], f"spool full ({error.strerror})"):
                        raise self.failure(error) from error
            if holding:
                self.trim()

    def contents(self) -> Contents:
        """The spool's entries (oldest first), orphans and set-aside fields."""
        contents = Contents()
        try:
            names = {entry.name for entry in os.scandir(self.directory)}
        except OSError:
            return contents
        for name in names:
            stem, _, suffix = name.partition(".")
            path = self.directory / name
            if name.endswith(".partial"):
                contents.orphans.append(path)
            elif suffix == "json.unreadable":
                contents.set_aside.append(path)
            elif not ENTRY_NAME.fullmatch(stem):
                continue
            elif suffix == "json":
                timestamp = int(stem.partition("-")[0])
                contents.entries.append(Entry(path.with_suffix(".jpg"), path, timestamp))
            elif suffix == "jpg" and not {f"{stem}.json", f"{stem}.json.unreadable"} & names:
                contents.orphans.append(path)
        contents.entries.sort(key=lambda entry: (entry.timestamp, entry.jpeg_path.name))
        return contents

    def entries(self) -> list[Entry]:
        return self.contents().entries

    @staticmethod
    def removed(entry: Entry) -> bool:
        """Remove an entry, its .json first: without it the .jpg is no longer a shot."""
        try:
            entry.fields_path.unlink()
            entry.jpeg_path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("cannot remove %s: %s", entry.fields_path.name, error.strerror)
        return not os.path.lexists(entry.fields_path)

    def dropped(self, entry: Entry, why: str) -> bool:
        if not self.removed(entry):
            return False
        log.warning(
            "%s: dropped the shot taken %s (%s)",
            why,
            shot_time(entry.timestamp),
            entry.jpeg_path.name,
        )
        return True

    def clean_orphans(self, orphans: list[Path]) -> list[Path]:
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

    def trim(self) -> None:
        """Remove old orphans, then drop the oldest shots past SPOOL_MAX_MB, orphans still
        in their grace period counted; the newest shot is always kept."""
        contents = self.contents()
        orphans = self.clean_orphans(contents.orphans)
        total = sum(entry.size for entry in contents.entries)
        total += sum(file_size(path) for path in orphans)
        for entry in contents.entries[:-1]:
            if total <= self.max_bytes:
                break
            total -= entry.size
            self.dropped(entry, f"spool over SPOOL_MAX_MB={self.max_bytes // 1_000_000}")

    def summary(self, contents: Contents | None = None) -> str:
        entries = (contents or self.contents()).entries
        count = f"{len(entries)} shot{'s' if len(entries) != 1 else ''}"
        return f"{count}, {size_text(sum(entry.size for entry in entries))}"

    def read(self, entry: Entry) -> dict[str, Any]:
        """The fields of a spooled shot, its JPEG as image_data; Unusable if it cannot be
        delivered as it is."""
        try:
            fields = fields_from_json(entry.fields_path.read_text(encoding="utf-8"))
        except OSError as error:
            raise Unusable(f"its fields cannot be read ({error.strerror})") from error
        except ValueError as error:
            raise Unusable(f"its fields are unreadable ({error})") from error
        problem = field_problem(fields)
        if problem:
            raise Unusable(problem)
        fields.setdefault("lux", -1)  # "no reading": version 1 left lux out then
        try:
            jpeg = entry.jpeg_path.read_bytes()
        except FileNotFoundError as error:
            raise Unusable("its JPEG is missing") from error
        except OSError as error:
            raise Unusable(f"its JPEG cannot be read ({error.strerror})") from error
        if not jpeg:
            raise Unusable("its JPEG is empty")
        fields["image_data"] = jpeg
        return fields

    def set_aside(self, entry: Entry, why: str) -> None:
        """Keep an entry that cannot be delivered out of the way: its fields renamed, its
        JPEG left as it is."""
        try:
            entry.fields_path.rename(entry.fields_path.with_suffix(".json.unreadable"))
        except OSError as error:
            log.warning("cannot set aside %s: %s", entry.fields_path.name, error.strerror)
            return
        log.warning(
            "the spooled shot %s cannot be delivered: %s; set aside as %s",
            entry.jpeg_path.name,
            why,
            entry.fields_path.name + ".unreadable",
        )

    def deliver(
        self,
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
        for entry in self.entries():
            if tried >= max_shots or time.monotonic() - started > max_seconds:
                break
            # Never longer than IMAGE_EXPIRY, even if the clock went back since the capture.
            ttl = min(entry.timestamp + expiry - int(time.time()), expiry)
            if ttl <= 0:
                if not self.removed(entry):
                    self.set_aside(entry, "past its expiry, it cannot be removed")
                else:
                    log.info(
                        "discarded the spooled shot taken %s: past its expiry",
                        shot_time(entry.timestamp),
                    )
                continue
            try:
                fields = self.read(entry)
            except Unusable as why:
                self.set_aside(entry, str(why))
                continue
            tried += 1
            try:
                key = put(fields, ttl)
            except ShotRefused as error:
                log.warning("spooled shot %s kept for later: %s", entry.jpeg_path.name, error)
                continue
            self.removed(entry)  # if it stays, its shot_id keeps it from being stored twice
            log.info("delivered the spooled shot %s (expires in %d s)", key, ttl)
