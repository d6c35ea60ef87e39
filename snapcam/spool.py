"""The spool: shots Redis did not take, kept on disk until a later run delivers them.

On-disk format, version 3, in SPOOL_DIR:
  NAME.jpg             the JPEG, exactly the bytes of image_data
  NAME.json            {"version": 3, "key_prefix": "image", "expires_at": <unix seconds>,
                       "fields": {...}}: the prefix of the shot's key, the moment it expires
                       (capture time plus the IMAGE_EXPIRY of the run that took it), and
                       every other field of the hash
  .NAME.jpg.partial,   a file being written: temporary file, fsync, rename; the .json is
  .NAME.json.partial   renamed last, so an entry is whole once NAME.json exists
  NAME.json.unreadable the fields of a shot that cannot be delivered, set aside beside its JPEG
  .lock                flock held by the one run that adds, trims or delivers; writable by all
  .status-*            no shot: a camera's status, kept for Redis (see status.py)
NAME is <capture unix seconds>-<pid>-<6 hex digits>: oldest first by name's number.
A .partial file, or a NAME.jpg without NAME.json, left by a run that was killed is removed
once it is an hour old (by mtime); until then it counts against SPOOL_MAX_MB.
Only regular files with one link are read, and none past a sane size: anything else under
an entry's name sets the entry aside, never blocks a run and is never delivered.
Versions 1 (snap 1.0: the fields object itself) and 2 (no key_prefix and expires_at: the
delivering run's are used) are read as well. An entry without a shot_id (version 1) is given
one derived from its .json, the same on every run, so that it is never stored twice.
Adding and trimming shots is keeping.py's; delivering them, delivery.py's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpoolError
from .locks import LockFileError, acquire, open_checked
from .shot import NO_LUX, SHOT_ID, field_problem

log = logging.getLogger("snap")

FORMAT_VERSION = 3
# Larger files under a spool name are none of snap's: a JPEG of the largest sensors is a few
# tens of MB, its fields a few kB.
JPEG_MAX_BYTES = 64_000_000
FIELDS_MAX_BYTES = 1_000_000
# Names that are not shots: the status kept for each camera (status.py).
STATUS_FILE_PREFIX = ".status-"
# Waiting for another run to release the spool is bounded: a shot is added without it.
LOCK_WAIT_SECONDS = 5.0
ENTRY_NAME = re.compile(r"\d+-[^.]*")


def size_text(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.0f} kB"


def shot_time(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


@dataclass(frozen=True)
class Spooled:
    """A shot as the spool keeps it: its hash's fields, the prefix of its key and the moment it
    expires (None when an older format did not record them)."""

    fields: dict[str, Any]
    key_prefix: str | None = None
    expires_at: int | None = None


def spooled_from_json(text: str) -> Spooled:
    """A .json of any version; ValueError if it holds no fields."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not an object")
    if "version" not in document:  # version 1: the fields themselves
        return Spooled(document)
    version = document["version"]
    if version not in (2, FORMAT_VERSION):
        raise ValueError(f"unknown spool format {version!r}")
    if not isinstance(document.get("fields"), dict):
        raise ValueError("it holds no fields object")
    key_prefix, expires_at = document.get("key_prefix"), document.get("expires_at")
    if version == FORMAT_VERSION and not (
        isinstance(key_prefix, str) and key_prefix and type(expires_at) is int
    ):
        raise ValueError("its key_prefix or expires_at is missing")
    return Spooled(document["fields"], key_prefix, expires_at)


def spooled_to_json(spooled: Spooled) -> bytes:
    """The .json of a shot, its JPEG left out."""
    fields = {name: value for name, value in spooled.fields.items() if name != "image_data"}
    document = {
        "version": FORMAT_VERSION,
        "key_prefix": spooled.key_prefix,
        "expires_at": spooled.expires_at,
        "fields": fields,
    }
    return json.dumps(document, default=str).encode()


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file with one link, of at most max_bytes; OSError otherwise.
    Opened without following a symbolic link and without blocking on a FIFO or a device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if status.st_nlink != 1:
            raise OSError(errno.EMLINK, "a hard link")
        if status.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"over {max_bytes // 1_000_000} MB")
        return file.read()


def file_reason(error: OSError) -> str:
    return "a symbolic link" if error.errno == errno.ELOOP else error.strerror


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
    """The spool's directory: what it holds, each entry read or removed, and its lock."""

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
            fd = open_checked(lock_path)
        except LockFileError as error:
            log.warning("cannot open the spool's lock %s: %s", lock_path, error.reason)
            yield False
            return

        def tell() -> None:
            log.info("waiting up to %g s for another run to release the spool", wait)

        try:
            yield acquire(fd, wait, on_wait=tell)
        finally:
            os.close(fd)

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
            if name.startswith(STATUS_FILE_PREFIX):
                continue
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
    def remove(entry: Entry) -> bool:
        """Remove an entry, its .json first (without it the .jpg is no longer a shot); whether
        it is gone."""
        try:
            entry.fields_path.unlink()
            entry.jpeg_path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("cannot remove %s: %s", entry.fields_path.name, error.strerror)
        return not os.path.lexists(entry.fields_path)

    def summary(self, contents: Contents | None = None) -> str:
        entries = (contents or self.contents()).entries
        count = f"{len(entries)} shot{'s' if len(entries) != 1 else ''}"
        return f"{count}, {size_text(sum(entry.size for entry in entries))}"

    def read(self, entry: Entry) -> Spooled:
        """A spooled shot, its JPEG as image_data; Unusable if it cannot be delivered as it is."""
        try:
            document = read_regular(entry.fields_path, FIELDS_MAX_BYTES)
            spooled = spooled_from_json(document.decode("utf-8"))
        except OSError as error:
            raise Unusable(f"its fields cannot be read ({file_reason(error)})") from error
        except ValueError as error:
            raise Unusable(f"its fields are unreadable ({error})") from error
        fields = spooled.fields
        problem = field_problem(fields)
        if problem:
            raise Unusable(problem)
        fields.setdefault("lux", NO_LUX)  # "no reading": version 1 left lux out then
        fields.setdefault(SHOT_ID, hashlib.sha256(document).hexdigest()[:16])
        try:
            jpeg = read_regular(entry.jpeg_path, JPEG_MAX_BYTES)
        except FileNotFoundError as error:
            raise Unusable("its JPEG is missing") from error
        except OSError as error:
            raise Unusable(f"its JPEG cannot be read ({file_reason(error)})") from error
        if not jpeg:
            raise Unusable("its JPEG is empty")
        fields["image_data"] = jpeg
        return spooled

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
