"""--status: every camera's status hash (status.py writes them), one line or one JSON
object per camera, and an exit code a watcher can act on."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from . import store
from .errors import ConfigError
from .masking import mask_url
from .status import STATE_FIELDS

if TYPE_CHECKING:
    from .config import Config

DEFAULT_STALE = 300.0
STALE_EXIT = 1


def read_statuses(client, prefix: str) -> list[tuple[str, dict[str, str]]]:
    """Every status hash under the prefix: (camera name, fields), by name."""
    keys = sorted({key.decode() for key in client.scan_iter(match=f"{prefix}:*", _type="hash")})
    statuses = []
    for key in keys:
        fields = client.hgetall(key)
        if fields:  # else it expired or was deleted since the SCAN
            decoded = {
                name.decode(): value.decode(errors="replace") for name, value in fields.items()
            }
            statuses.append((key[len(prefix) + 1 :], decoded))
    return statuses


def number(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def assess(name: str, fields: dict[str, str], now: int, stale: float) -> dict[str, Any]:
    """A camera's status as --status reports it: fresh when it stored a shot, or skipped one
    as too dark, within `stale` seconds."""
    camera: dict[str, Any] = {"camera": name}
    for field, default in (*STATE_FIELDS.items(), ("spooled", 0), ("version", ""), ("host", "")):
        value = fields.get(field)
        camera[field] = number(value) if isinstance(default, int) else (value or "")
    camera["age"] = now - camera["last_stored"] if camera["last_stored"] else None
    dark_age = now - camera["skipped_dark"] if camera["skipped_dark"] else None
    if camera["age"] is not None and camera["age"] <= stale:
        camera["state"] = "ok"
    elif dark_age is not None and dark_age <= stale:
        camera["state"] = "dark"
    else:
        camera["state"] = "stale"
    return camera


def ago(now: int, then: int) -> str:
    seconds = now - then
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def status_line(camera: dict[str, Any], now: int) -> str:
    last_shot = (
        f"last shot {ago(now, camera['last_stored'])} ({camera['last_key']})"
        if camera["last_stored"]
        else "no shot stored yet"
    )
    state = "STALE" if camera["state"] == "stale" else camera["state"]
    parts = [f"{camera['camera']}: {state}", last_shot]
    if camera["state"] == "dark":
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
    return line


def show(config: Config, stale: float | None, as_json: bool) -> int:
    """--status: one line (or one JSON object) per camera; 0 when every camera is fresh,
    STALE_EXIT when one is not or none has a status."""
    if not config.status_prefix:
        raise ConfigError(
            "STATUS_PREFIX is set empty: no camera writes a status; unset it for snap:camera"
        )
    stale = DEFAULT_STALE if stale is None else stale
    stale = int(stale) if stale == int(stale) else stale
    client = store.redis_client(config)
    try:
        statuses = read_statuses(client, config.status_prefix)
    except store.redis_errors() as error:
        raise store.redis_failure(error, config) from error
    now = int(time.time())
    cameras = [assess(name, fields, now, stale) for name, fields in statuses]
    fresh = bool(cameras) and all(camera["state"] != "stale" for camera in cameras)
    if as_json:
        print(
            json.dumps({"ok": fresh, "stale_seconds": stale, "cameras": cameras}, allow_nan=False)
        )
    elif not cameras:
        print(f"no camera status under {config.status_prefix}:* at {mask_url(config.redis_url)}")
    else:
        for camera in cameras:
            print(status_line(camera, now))
    return os.EX_OK if fresh else STALE_EXIT
