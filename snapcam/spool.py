"""The spool: shots Redis did not take, kept on disk until a later run delivers them.

On-disk format, version 2, in SPOOL_DIR:
  NAME.jpg             the JPEG, exactly the bytes of image_data
  NAME.json            {"version": 2, "fields": {...}}: every other field of the hash
  .NAME.jpg.partial,   a file being written: temporary file, fsync, rename; the .json is
  .NAME.json.partial   renamed last, so an entry is whole once NAME.json exists
  NAME.json.unreadable fields that could not be read, set aside beside their JPEG
  .lock                flock held by the one run that adds, trims or delivers
NAME is <capture unix seconds>-<pid>-<6 hex digits>: oldest first by name's number.
Version 1 (snap 1.0) wrote the fields object itself as NAME.json; it is read as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import SpoolError

log = logging.getLogger("snap")

FORMAT_VERSION = 2


def size_text(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.0f} kB"


def shot_time(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def create_new(path, flags: int) -> int:
    """An opener for open(): a file of its own, never one a symbolic link planted under its
    name points to."""
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: a crash never leaves a half file under `path`."""
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb", opener=create_new) as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


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


@dataclass(frozen=True)
class Entry:
    """One whole shot in the spool."""

    jpeg_path: Path
    fields_path: Path
    timestamp: int

    @property
    def size(self) -> int:
        return self.jpeg_path.stat().st_size + self.fields_path.stat().st_size


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
            return f"{self.summary()} waiting"
        existing = next(parent for parent in self.directory.parents if parent.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise SpoolError(
                f"cannot create SPOOL_DIR {self.directory}: {existing} is not writable"
            )
        return "created by the first shot"

    @contextlib.contextmanager
    def locked(self, wait: bool = True):
        """Yield whether this run holds the spool: one run at a time adds, trims or delivers."""
        try:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            raise self.failure(error) from error
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def add(self, fields: dict[str, Any]) -> None:
        """Write one entry; the caller holds the lock."""
        name = f"{fields['timestamp']}-{os.getpid()}-{os.urandom(3).hex()}"
        other_fields = {key: value for key, value in fields.items() if key != "image_data"}
        document = {"version": FORMAT_VERSION, "fields": other_fields}
        try:
            write_atomically(self.directory / f"{name}.jpg", fields["image_data"])
            write_atomically(self.directory / f"{name}.json", json.dumps(document).encode())
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            raise self.failure(error) from error

    def keep(self, fields: dict[str, Any]) -> None:
        """Add a shot and trim the spool to its size limit."""
        with self.locked():
            self.add(fields)
            self.trim()

    def entries(self) -> list[Entry]:
        """The whole shots in the spool, oldest first."""
        entries = []
        for fields_path in self.directory.glob("[0-9]*-*.json"):
            jpeg_path = fields_path.with_suffix(".jpg")
            name = re.match(r"(\d+)-", fields_path.name)
            if name and jpeg_path.exists():
                entries.append(Entry(jpeg_path, fields_path, int(name.group(1))))
        return sorted(entries, key=lambda entry: (entry.timestamp, entry.jpeg_path.name))

    @staticmethod
    def remove(entry: Entry) -> None:
        entry.fields_path.unlink()  # first: without it the .jpg is no longer a shot
        entry.jpeg_path.unlink()

    def trim(self) -> None:
        """Drop the oldest shots past SPOOL_MAX_MB; the newest is always kept."""
        entries = self.entries()
        total = sum(entry.size for entry in entries)
        for entry in entries[:-1]:
            if total <= self.max_bytes:
                break
            total -= entry.size
            self.remove(entry)
            log.warning(
                "warning: spool over SPOOL_MAX_MB=%d: dropped the shot taken %s (%s)",
                self.max_bytes // 1_000_000,
                shot_time(entry.timestamp),
                entry.jpeg_path.name,
            )

    def summary(self) -> str:
        entries = self.entries()
        count = f"{len(entries)} shot{'s' if len(entries) != 1 else ''}"
        return f"{count}, {size_text(sum(entry.size for entry in entries))}"

    def deliver(
        self,
        put: Callable[[dict[str, Any], int], str],
        expiry: int,
        max_shots: int,
        max_seconds: float,
    ) -> None:
        """Hand the oldest shots to put(fields, ttl) with what is left of their TTL, a bounded
        batch per run; the caller holds the lock."""
        started = time.monotonic()
        for entry in self.entries()[:max_shots]:
            if time.monotonic() - started > max_seconds:
                break
            ttl = entry.timestamp + expiry - int(time.time())
            if ttl <= 0:
                self.remove(entry)
                log.info(
                    "discarded the spooled shot taken %s: past its expiry",
                    shot_time(entry.timestamp),
                )
                continue
            try:
                fields = fields_from_json(entry.fields_path.read_text())
            except ValueError:
                entry.fields_path.rename(entry.fields_path.with_suffix(".json.unreadable"))
                log.warning(
                    "warning: the fields of spooled shot %s are unreadable: set aside, JPEG kept",
                    entry.jpeg_path.name,
                )
                continue
            fields["image_data"] = entry.jpeg_path.read_bytes()
            key = put(fields, ttl)
            self.remove(entry)
            log.info("delivered the spooled shot %s (expires in %d s)", key, ttl)
