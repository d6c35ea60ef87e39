"""Each camera's status in Redis, so that a fleet can be watched; and --status, which reads it.

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
could not: SPOOL_DIR/.status-<CAMERA_NAME, percent-encoded> holds the JSON object
{"version": 1, "fields": {...}} with every field above but the last three, replaced whole by
each run (temporary file, rename: the last run to write wins). One HSET then copies all the
fields into the hash. That write is best effort: bounded by STATUS_SECONDS and the run's own
deadline, left out when Redis has just failed to take the run's shot or the run was stopped
(a stop signal, the watchdog), its failure a warning line at most (a debug line when Redis
is unreachable), never the run's failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from . import __version__, store
from .errors import Interrupted, SnapError, describe
from .masking import mask_text

if TYPE_CHECKING:
    from .config import Config
    from .guard import Guard
    from .spool import Spool

log = logging.getLogger("snap")

STATE_VERSION = 1
STATUS_SECONDS = 1.0  # at most this long for the status write, on top of the run
DEADLINE_MARGIN = 0.2  # seconds kept free before RUN_TIMEOUT
ERROR_MAX_CHARS = 400
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


def state_path(config: Config) -> Path:
    return config.spool_dir / f".status-{quote(config.camera_name, safe='')}"


def read_state(path: Path) -> dict[str, Any]:
    """The fields kept on disk; defaults for any missing or unreadable."""
    try:
        document = json.loads(path.read_text())
        fields = document["fields"] if document["version"] == STATE_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError):
        fields = {}
    if not isinstance(fields, dict):
        fields = {}
    return {
        name: value if type(value) is type(default) else default
        for name, default in STATE_FIELDS.items()
        for value in [fields.get(name)]
    }


def write_state(path: Path, fields: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        temporary.write_text(json.dumps({"version": STATE_VERSION, "fields": fields}))
        os.replace(temporary, path)
    except OSError as error:
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
    thread.join(seconds)
    return outcome[0] if outcome else TimeoutError(f"no answer within {seconds:g} s")


def write_hash(config: Config, guard: Guard, fields: dict[str, Any], client=None) -> None:
    """Copy the fields into the status hash: one HSET, bounded, failures logged, never raised."""
    import redis  # here, not in the thread: an import is no wait on the network

    seconds = min(STATUS_SECONDS, guard.deadline - time.monotonic() - DEADLINE_MARGIN)
    key = store.status_key(config)
    if seconds <= 0:
        log.debug("status not written to %s: the run is at its RUN_TIMEOUT", key)
        return
    values = {
        **fields,
        "spooled": spooled(guard.spool),
        "version": __version__,
        "host": socket.gethostname(),
    }

    def write() -> None:
        writer = client
        if writer is None:
            timeout = min(config.redis_timeout, STATUS_SECONDS)
            writer = store.redis_client(dataclasses.replace(config, redis_timeout=timeout))
        writer.hset(key, mapping=values)

    error = bounded(write, seconds)
    if error is None:
        return
    if isinstance(error, (TimeoutError, redis.ConnectionError, redis.TimeoutError)):
        log.debug("status not written to %s: %s", key, error)
        return
    if isinstance(error, store.redis_errors()):
        error = store.redis_failure(error, config)
    elif not isinstance(error, SnapError):
        error = describe(error)
    log.warning("status not written to %s: %s", key, error)


def record(
    config: Config,
    guard: Guard,
    change: Callable[[dict[str, Any]], None],
    client=None,
    reach_redis: bool = True,
) -> None:
    """Apply a run's outcome to the state on disk, then to the hash. Never raises: the
    status never changes the run (and the watchdog calls this just before it ends the run)."""
    if not config.status_prefix:
        return
    try:
        path = state_path(config)
        fields = read_state(path)
        change(fields)
        write_state(path, fields)
        if reach_redis:
            write_hash(config, guard, fields, client)
    except Exception as error:
        log.warning("status not recorded: %s", describe(error))


def record_stored(
    config: Config, guard: Guard, client, key: str, timestamp: int, code: int
) -> None:
    """The shot is in Redis, under `key`; `client` reached it."""

    def stored(fields: dict[str, Any]) -> None:
        fields.update(
            last_run=int(time.time()),
            last_exit=code,
            last_stored=timestamp,
            last_key=key,
            failures=0,
        )

    record(config, guard, stored, client)


def record_dark(config: Config, guard: Guard) -> None:
    """No shot: the camera's lux was below MIN_LUX."""
    now = int(time.time())
    record(config, guard, lambda fields: fields.update(last_run=now, last_exit=0, skipped_dark=now))


def record_failure(
    config: Config, guard: Guard, code: int, line: str, reach_redis: bool = True
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

    record(config, guard, failed, reach_redis=reach_redis)


def watchdog_report(config: Config, guard: Guard) -> Callable[[str, int], None]:
    """What the guard calls as its deadline ends the run: the failure kept on disk only, for
    the next run to report."""
    return lambda line, code: record_failure(config, guard, code, line, reach_redis=False)


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
