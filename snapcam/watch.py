"""--status: every camera's status hash (status.py writes them), one line or one JSON
object per camera, and an exit code a watcher can act on.

The hashes are read a batch at a time (SCAN, then one pipeline of HGETALL per batch), in a
thread, until RUN_TIMEOUT less READ_MARGIN: what was read by then (or before Redis failed
mid-way) is printed, and the run exits 75 saying the rest was not. A name or field name that
is not UTF-8 lists the camera as unreadable; a status dated in the future beyond
FUTURE_TOLERANCE is flagged; both exit 1.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Callable

from . import store
from .errors import ConfigError, TemporaryFailure
from .masking import mask_url
from .status import STATE_FIELDS, bounded

if TYPE_CHECKING:
    from .config import Config

DEFAULT_STALE = 300.0
STALE_EXIT = 1
FUTURE_TOLERANCE = 60  # seconds a camera's clock may be ahead of this machine's
SCAN_COUNT = 500  # keys per batch: one SCAN, one pipeline of HGETALL
READ_MARGIN = 0.5  # seconds kept before RUN_TIMEOUT to print what was read
DATED_FIELDS = ("last_run", "last_stored", "last_failure", "skipped_dark")
# Read as: name, fields (None when unreadable), and why it is unreadable.
Status = tuple[str, "dict[str, str] | None", str]


def cluster_node(client) -> bool:
    """Whether the server is a Redis Cluster node (HELLO needs no ACL grant); a server too old
    for HELLO is none."""
    import redis

    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("HELLO", "2")
        reply = connection.read_response()
    except redis.ResponseError:
        return False
    finally:  # closed: redis-py would parse what follows on it by HELLO's protocol
        connection.disconnect()
        pool.release(connection)
    info = dict(zip(reply[::2], reply[1::2]))
    return info.get(b"mode") == b"cluster"


def decoded(prefix: str, key: bytes, raw: dict[bytes, bytes]) -> Status:
    """A status hash read: its camera's name, its fields, and why it is unreadable ("")."""
    name_bytes = key[len(prefix) + 1 :]
    name = name_bytes.decode("utf-8", "backslashreplace")
    try:
        name_bytes.decode("utf-8")
        fields = {field.decode(): value.decode(errors="replace") for field, value in raw.items()}
    except UnicodeDecodeError:
        what = "field name" if name_bytes.decode("utf-8", "ignore") == name else "name"
        return name, None, f"its {what} is not UTF-8"
    return name, fields, ""


def read_statuses(client, config: Config, found: list[Status]) -> None:
    """Every status hash under STATUS_PREFIX, appended to `found` a batch at a time."""
    if not config.redis_cluster and cluster_node(client):
        raise ConfigError(
            f"{mask_url(config.redis_url)} is a Redis Cluster node: it holds only some cameras' "
            "statuses; set REDIS_CLUSTER=true to read them from every node"
        )
    prefix = config.status_prefix
    seen: set[bytes] = set()
    batch: list[bytes] = []

    def read(keys: list[bytes]) -> None:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            replies = pipe.execute()
        # An empty reply: the hash expired or was deleted since the SCAN.
        found.extend(decoded(prefix, key, raw) for key, raw in zip(keys, replies) if raw)

    for key in client.scan_iter(match=f"{prefix}:*", count=SCAN_COUNT, _type="hash"):
        if key not in seen:  # SCAN may return a key twice
            seen.add(key)
            batch.append(key)
        if len(batch) == SCAN_COUNT:
            read(batch)
            batch = []
    if batch:
        read(batch)


def number(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def assess(name: str, fields: dict[str, str] | None, now: int, stale: float, problem: str = ""):
    """A camera's status as --status reports it: fresh when it stored a shot, or skipped one
    as too dark, within `stale` seconds; ahead when dated in the future."""
    camera: dict[str, Any] = {"camera": name}
    for field, default in (*STATE_FIELDS.items(), ("spooled", 0), ("version", ""), ("host", "")):
        value = (fields or {}).get(field)
        camera[field] = number(value) if isinstance(default, int) else (value or "")
    camera["age"] = now - camera["last_stored"] if camera["last_stored"] else None
    dark_age = now - camera["skipped_dark"] if camera["skipped_dark"] else None
    if fields is None:
        camera["state"], camera["problem"] = "unreadable", problem
    elif any(camera[field] > now + FUTURE_TOLERANCE for field in DATED_FIELDS):
        camera["state"] = "ahead"
    elif camera["age"] is not None and camera["age"] <= stale:
        camera["state"] = "ok"
    elif dark_age is not None and dark_age <= stale:
        camera["state"] = "dark"
    else:
        camera["state"] = "stale"
    return camera


def ago(now: int, then: int) -> str:
    seconds = now - then
    if seconds < 0:
        return f"{span(-seconds)} ahead"
    return f"{span(seconds)} ago"


def span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def escaped(text: str) -> str:
    """The text with every control character (newline, CR, ESC ...) written as an escape."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def status_line(camera: dict[str, Any], now: int) -> str:
    if camera["state"] == "unreadable":
        return escaped(f"{camera['camera']}: UNREADABLE, {camera['problem']}")
    last_shot = (
        f"last shot {ago(now, camera['last_stored'])} ({camera['last_key']})"
        if camera["last_stored"]
        else "no shot stored yet"
    )
    state = camera["state"]
    parts = [f"{camera['camera']}: {state.upper() if state in ('stale', 'ahead') else state}"]
    if state == "ahead":
        parts.append("its clock is ahead of this machine's")
    parts.append(last_shot)
    if state == "dark":
        parts.append(f"too dark {ago(now, camera['skipped_dark'])}")
    failures = camera["failures"]
    parts += [
        f"exit {camera['last_exit']}",
        f"{failures} failure{'s' if failures != 1 else ''}",
        f"{camera['spooled']} spooled",
    ]
    line = ", ".join(parts)
    if camera["last_error"]:
        line += f"; last error {ago(now, camera['last_failure'])}: {camera['last_error']}"
    return escaped(line)


def read_in_time(config: Config, seconds: float) -> tuple[list[Status], bool, Exception | None]:
    """The statuses read within `seconds`, whether that is all of them, and the failure that
    stopped the reading, if one did (the statuses read before it are listed all the same)."""
    client = store.redis_client(config)
    found: list[Status] = []
    failure = bounded(lambda: read_statuses(client, config, found), seconds)
    read = sorted(found[:], key=lambda status: status[0])
    if failure is None:
        return read, True, None
    if isinstance(failure, store.redis_errors()):
        return read, False, store.redis_failure(failure, config)
    if isinstance(failure, TimeoutError):  # still reading when the time was up
        return read, False, None
    raise failure


def show(config: Config, stale: float | None, as_json: bool, emit: Callable[[str], None]) -> int:
    """--status: one line (or one JSON object) per camera, each handed to emit (which makes
    a standard output that cannot be written cost a warning, never the exit code); 0 when
    every camera is fresh, STALE_EXIT when one is not or none has a status."""
    started = time.monotonic()
    if not config.status_prefix:
        raise ConfigError(
            "STATUS_PREFIX is set empty: no camera writes a status; unset it for snap:camera"
        )
    stale = DEFAULT_STALE if stale is None else stale
    stale = int(stale) if stale == int(stale) else stale
    statuses, complete, failure = read_in_time(
        config, config.run_timeout - READ_MARGIN - (time.monotonic() - started)
    )
    now = int(time.time())
    cameras = [assess(name, fields, now, stale, problem) for name, fields, problem in statuses]
    fresh = bool(cameras) and all(camera["state"] in ("ok", "dark") for camera in cameras)
    if as_json:
        emit(json.dumps({"ok": fresh, "stale_seconds": stale, "cameras": cameras}, allow_nan=False))
    elif not cameras and complete:
        emit(f"no camera status under {config.status_prefix}:* at {mask_url(config.redis_url)}")
    else:
        for camera in cameras:
            emit(status_line(camera, now))
    if failure is not None:
        raise failure
    if not complete:
        raise TemporaryFailure(
            f"--status read {len(cameras)} camera status(es) under {config.status_prefix}:* "
            f"within RUN_TIMEOUT ({config.run_timeout:g} s); the others are not listed",
            f"check that Redis answers: {store.ping_command(config.redis_url)}",
        )
    return os.EX_OK if fresh else STALE_EXIT
