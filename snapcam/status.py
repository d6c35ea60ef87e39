"""Recording each camera's status in Redis, so that a fleet can be watched (watch.py reads it).

Every run of a shot (not --dry-run) updates the hash STATUS_PREFIX:<CAMERA_NAME>, by default
snap:camera:<hostname>, whose keys lie outside the shots' so that no front end lists them:
  last_run, last_exit        unix seconds of the latest run, and its exit code
  last_stored, last_key      unix seconds of the latest shot stored (0: none yet), and its key
  failures                   failed runs since the latest shot stored (a dark skip is none)
  first_failure, last_failure  unix seconds of the first and the latest failure of the latest
                             run of failures (0: none); last_error, the latest one's line
  skipped_dark               unix seconds of the latest shot skipped as too dark (0: none)
  spooled, version, host     shots waiting in the spool, snap's version, the hostname

The state is kept on disk first, so that the next run that reaches Redis reports a run that
could not: SPOOL_DIR/.status-<CAMERA_NAME percent-encoded, dots too, cut at 48>-<16 hex
digits of its SHA-256> (no spool name, whatever the camera's name) holds the JSON object
{"version": 1, "camera": <CAMERA_NAME>, "fields": {...}} with every field above but the last
three, replaced whole by each run (temporary file, fsync, rename, fsync of the directory;
the temporary file removed if the write fails). The hash is then written in one
WATCH/HGETALL/MULTI/HSET/EXEC: the run's change applied to the state on disk merged with
the hash, each group of fields taken from whichever is newer, so that neither a lost state
file nor another spool's old one rewinds the status (a user refused HGETALL writes what the
run knows). It is all best effort: bounded by STATUS_SECONDS and the run's own deadline (the
kernel's last-resort alarm, for the watchdog's report), Redis left out when it has just
failed to take the run's shot or the run was stopped (a stop signal, the watchdog, which
records a shot Redis has as stored), its failure a warning line at most (a debug line when
Redis is unreachable), never the run's failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from . import __version__, store
from .errors import Interrupted, SnapError, describe
from .masking import mask_text
from .spool import STATUS_FILE_PREFIX, read_regular

if TYPE_CHECKING:
    from .config import Config
    from .guard import Guard
    from .spool import Spool

log = logging.getLogger("snap")

STATE_VERSION = 1
STATUS_SECONDS = 1.0  # at most this long for the status write, on top of the run
DEADLINE_MARGIN = 0.2  # seconds kept free before RUN_TIMEOUT, or before the last-resort alarm
ERROR_MAX_CHARS = 400
STATE_NAME_CHARS = 48  # of the camera's name, percent-encoded, in the state file's name
STATE_MAX_BYTES = 100_000
STALE_TEMPORARY_SECONDS = 3600  # a temporary state file this old was left by a killed run
MERGE_TRIES = 3
STATE_FIELDS = {
    "last_run": 0,
    "last_exit": 0,
    "last_stored": 0,
    "last_key": "",
    "failures": 0,
    "first_failure": 0,
    "last_failure": 0,
    "last_error": "",
    "skipped_dark": 0,
}
# The fields that go together, each group dated by its first field: merging two statuses
# takes each group from whichever is newer.
FIELD_GROUPS = (
    ("last_run", "last_exit"),
    ("last_stored", "last_key"),
    ("last_failure", "first_failure", "failures", "last_error"),
    ("skipped_dark",),
)


def state_path(config: Config) -> Path:
    """SPOOL_DIR/.status-<name>-<hash>: the name percent-encoded (dots too) and cut short, the
    hash of the whole name after it, so any name gives a short file name no spool name has."""
    name = config.camera_name
    readable = quote(name, safe="").replace(".", "%2E")[:STATE_NAME_CHARS]
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return config.spool_dir / f"{STATUS_FILE_PREFIX}{readable}-{digest}"


def typed(fields: Any) -> dict[str, Any]:
    """Every state field, of its type; the default for any missing or of another type."""
    if not isinstance(fields, dict):
        fields = {}
    return {
        name: value if type(value) is type(default) else default
        for name, default in STATE_FIELDS.items()
        for value in [fields.get(name)]
    }


def read_state(path: Path) -> dict[str, Any]:
    """The fields kept on disk; defaults for any missing or unreadable. Read only from a
    regular file: a FIFO or a device there never blocks the run."""
    try:
        document = json.loads(read_regular(path, STATE_MAX_BYTES))
        fields = document["fields"] if document["version"] == STATE_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError):
        fields = {}
    return typed(fields)


def from_hash(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """The state fields of a status hash as Redis holds it."""
    fields: dict[str, Any] = {}
    for name, default in STATE_FIELDS.items():
        text = raw.get(name.encode(), b"").decode("utf-8", "replace")
        try:
            fields[name] = int(text) if isinstance(default, int) else text
        except ValueError:
            fields[name] = default
    return fields


def merged(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Ours, with each group of fields that theirs holds newer taken from theirs: an old or
    lost state never rewinds a newer one."""
    fields = dict(ours)
    for group in FIELD_GROUPS:
        if theirs[group[0]] > ours[group[0]]:
            fields.update({name: theirs[name] for name in group})
    if fields["last_stored"] > fields["last_failure"]:  # no failure since the latest shot
        fields["failures"] = 0
    return fields


def remove_stale_temporaries(path: Path) -> None:
    now = time.time()
    for leftover in path.parent.glob(f"{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.lstat().st_mtime > STALE_TEMPORARY_SECONDS:
                leftover.unlink()


def write_state(path: Path, camera: str, fields: dict[str, Any]) -> None:
    """Temporary file (its name begins as the state file's: no spool name), fsync, rename,
    fsync of the directory; a write that fails removes what it wrote."""
    data = json.dumps({"version": STATE_VERSION, "camera": camera, "fields": fields}).encode()
    remove_stale_temporaries(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        log.debug("status not kept in %s: %s", path, error.strerror)
        return
    try:
        with open(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        log.debug("status not kept in %s: %s", path, error.strerror)


def spooled(spool: Spool) -> int:
    try:
        return len(spool.entries())
    except OSError:
        return 0


def bounded(work: Callable[[], None], seconds: float) -> Exception | None:
    """Run work() in a thread for at most `seconds`: what it raised, or None. A thread still
    waiting is left behind; it ends with the process."""
    outcome: list[Exception | None] = []

    def target() -> None:
        try:
            work()
        except Exception as error:
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, name="snap-status", daemon=True)
    thread.start()
    thread.join(max(seconds, 0))
    return outcome[0] if outcome else TimeoutError(f"no answer within {seconds:g} s")


def time_left(guard: Guard, expiring: bool = False) -> float:
    """How long the status may take: STATUS_SECONDS at most, and never past the run's deadline
    or, once the watchdog is ending the run, past the kernel's last-resort alarm."""
    if expiring:
        alarm, _ = signal.getitimer(signal.ITIMER_REAL)
        left = alarm - DEADLINE_MARGIN if alarm else STATUS_SECONDS
    else:
        left = guard.deadline - time.monotonic() - DEADLINE_MARGIN
    return min(STATUS_SECONDS, left)


def merge_into_hash(client, key: str, before, change, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the run's change over the status in Redis merged with the one on disk, newest
    first, in one WATCH/MULTI/EXEC; the fields written. A user refused HGETALL writes what
    this run knows."""
    import redis

    with client.pipeline(transaction=True) as pipe:
        for _ in range(MERGE_TRIES):
            pipe.watch(key)
            try:
                fields = merged(before, from_hash(pipe.hgetall(key)))
            except redis.ResponseError as error:
                if "'hgetall' command" not in str(error):
                    raise
                pipe.reset()
                fields = dict(before)
                change(fields)
                client.hset(key, mapping={**fields, **extra})
                return fields
            change(fields)
            pipe.multi()
            pipe.hset(key, mapping={**fields, **extra})
            try:
                pipe.execute()
                return fields
            except redis.WatchError:
                pipe.reset()
    raise TimeoutError(f"{key} changed under each of {MERGE_TRIES} writes")


def write_hash(config: Config, guard: Guard, before, change, until=None, client=None):
    """Merge the run's change into the status hash, by `until` (default: time_left()); the
    fields written, or None (failures logged, never raised)."""
    import redis  # here, not in the thread: an import is no wait on the network

    seconds = (until or time.monotonic() + time_left(guard)) - time.monotonic()
    key = store.status_key(config)
    if seconds <= 0:
        log.debug("status not written to %s: the run is at its RUN_TIMEOUT", key)
        return None
    extra = {"spooled": spooled(guard.spool), "version": __version__, "host": socket.gethostname()}
    written: dict[str, Any] = {}

    def write() -> None:
        writer = client
        if writer is None:
            timeout = min(config.redis_timeout, STATUS_SECONDS)
            writer = store.redis_client(dataclasses.replace(config, redis_timeout=timeout))
        written.update(merge_into_hash(writer, key, before, change, extra))

    error = bounded(write, seconds)
    if error is None:
        return written
    if isinstance(error, (TimeoutError, redis.ConnectionError, redis.TimeoutError)):
        log.debug("status not written to %s: %s", key, error)
        return None
    if isinstance(error, store.redis_errors()):
        error = store.redis_failure(error, config)
    elif not isinstance(error, SnapError):
        error = describe(error)
    log.warning("status not written to %s: %s", key, error)
    return None


def record(
    config: Config,
    guard: Guard,
    change: Callable[[dict[str, Any]], None],
    client=None,
    reach_redis: bool = True,
    expiring: bool = False,
) -> None:
    """Apply a run's outcome to the state on disk, then merge it into the hash, all within
    time_left(). Never raises: the status never changes the run (and the watchdog calls this
    just before it ends the run)."""
    if not config.status_prefix:
        return
    try:
        until = time.monotonic() + time_left(guard, expiring)
        path = state_path(config)
        before = read_state(path)
        fields = dict(before)
        change(fields)
        if bounded(lambda: write_state(path, config.camera_name, fields), until - time.monotonic()):
            log.debug("status not kept in %s: the disk did not answer in time", path)
        if not reach_redis:
            return
        written = write_hash(config, guard, before, change, until, client)
        if written is not None and written != fields:  # Redis knew better: so does the disk
            bounded(
                lambda: write_state(path, config.camera_name, written), until - time.monotonic()
            )
    except Exception as error:
        log.warning("status not recorded: %s", describe(error))


def stored_change(key: str, timestamp: int, code: int) -> Callable[[dict[str, Any]], None]:
    def stored(fields: dict[str, Any]) -> None:
        fields.update(
            last_run=int(time.time()),
            last_exit=code,
            last_stored=timestamp,
            last_key=key,
            failures=0,
        )

    return stored


def record_stored(
    config: Config, guard: Guard, client, key: str, timestamp: int, code: int
) -> None:
    """The shot is in Redis, under `key`; `client` reached it."""
    record(config, guard, stored_change(key, timestamp, code), client)


def record_dark(config: Config, guard: Guard) -> None:
    """No shot: the camera's lux was below MIN_LUX."""
    now = int(time.time())
    record(config, guard, lambda fields: fields.update(last_run=now, last_exit=0, skipped_dark=now))


def record_failure(
    config: Config,
    guard: Guard,
    code: int,
    line: str,
    reach_redis: bool = True,
    expiring: bool = False,
) -> None:
    line = mask_text(line, config.redis_url).replace("\n", " ")[:ERROR_MAX_CHARS]

    def failed(fields: dict[str, Any]) -> None:
        now = int(time.time())
        if fields["failures"] == 0:
            fields["first_failure"] = now
        fields.update(
            last_run=now,
            last_exit=code,
            failures=fields["failures"] + 1,
            last_failure=now,
            last_error=line,
        )

    record(config, guard, failed, reach_redis=reach_redis, expiring=expiring)


def watchdog_report(config: Config, guard: Guard) -> Callable[[str, int], None]:
    """What the guard calls as its deadline ends the run: the run's outcome kept on disk only,
    before the kernel's last-resort alarm, for the next run to report; a run whose shot Redis
    has is recorded as stored."""

    def report(line: str, code: int) -> None:
        if guard.stored:
            key, timestamp = guard.stored_as
            change = stored_change(key, timestamp, code)
            record(config, guard, change, reach_redis=False, expiring=True)
        else:
            record_failure(config, guard, code, line, reach_redis=False, expiring=True)

    return report


@contextlib.contextmanager
def recording(config: Config, guard: Guard):
    """Record a run that ends in an error or a stop signal; the error goes on as it was."""
    try:
        yield
    except SnapError as error:
        # Redis did not take the shot: the next run that reaches it reports this one.
        reach_redis = guard.current_step is not store.STORING
        record_failure(config, guard, error.exit_code, str(error), reach_redis)
        raise
    except Interrupted as stop:
        record_failure(config, guard, stop.exit_code, str(stop), False)
        raise
    except KeyboardInterrupt:
        record_failure(config, guard, 130, "interrupted", False)
        raise
    except Exception as error:
        record_failure(config, guard, os.EX_SOFTWARE, describe(error))
        raise
