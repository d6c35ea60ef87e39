"""The timeline of a shot, for tests/benchmark.py: when, after the process was started, the
camera was open, then closed, the shot in Redis, and the process gone; medians of runs of
snap.py and of the floor, made one after the other.

The camera's moments come from the fake camera (FAKE_CAMERA_TIMES), the shot's from Redis
itself: a keyspace notification of the EXPIRE that follows a shot's HSET in its transaction,
timed by a thread of the benchmark blocked on the subscription. Both sides are timed alike,
and neither run is slowed by anything but the notification Redis sends.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MOMENTS = ("camera open", "camera closed", "stored", "process gone")


@dataclass(frozen=True)
class Span:
    began: float  # time.time() when the process was started
    ended: float  # time.time() when it was gone


class StoredTimes:
    """When Redis ran the EXPIRE of each image:* key: the shot stored, with its expiry."""

    def __init__(self, client):
        self.client = client
        client.config_set("notify-keyspace-events", "Kg")  # keyspace events, generic commands
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("__keyspace@*__:image:*")
        self.times: list[float] = []
        threading.Thread(target=self.listen, daemon=True).start()

    def listen(self) -> None:
        try:
            for message in self.pubsub.listen():
                if message["type"] == "pmessage" and message["data"] == b"expire":
                    self.times.append(time.time())
        except Exception:  # the server stopped: the benchmark is over
            pass

    def first_within(self, span: Span) -> float | None:
        found = [moment for moment in self.times if span.began <= moment <= span.ended]
        return min(found) if found else None

    def stop(self) -> None:
        self.client.config_set("notify-keyspace-events", "")


def camera_times(times_log: Path) -> dict[str, float]:
    """The first time the fake camera logged each event ("open 0", "close", ...)."""
    found: dict[str, float] = {}
    for line in times_log.read_text().splitlines() if times_log.exists() else []:
        when, _, event = line.partition(" ")
        found.setdefault(event, float(when))
    return found


def moments(span: Span, camera: dict[str, float], stored: float | None) -> list[float]:
    """Milliseconds from the start to each of MOMENTS; NaN for one that did not happen."""
    opened = next((when for event, when in camera.items() if event.startswith("open ")), None)
    return [
        (when - span.began) * 1000 if when is not None else float("nan")
        for when in (opened, camera.get("close"), stored, span.ended)
    ]


def timelines(
    run: Callable[[str], Span], names: list[str], runs: int, times_log: Path, client
) -> dict[str, list[list[float]]]:
    """`runs` rounds of run(name) for every name, in alternate order; the moments of each."""
    stored = StoredTimes(client)
    found: dict[str, list[list[float]]] = {name: [] for name in names}
    try:
        for round_number in range(runs):
            for name in names if round_number % 2 == 0 else reversed(names):
                times_log.unlink(missing_ok=True)
                span = run(name)
                time.sleep(0.05)  # the notification's way to the listening thread
                camera = camera_times(times_log)
                found[name].append(moments(span, camera, stored.first_within(span)))
    finally:
        stored.stop()
    return found


def median_ms(values: list[float]) -> str:
    values = [value for value in values if value == value]  # without NaN
    return f"{statistics.median(values):.0f}" if values else "-"


def render(title: str, found: dict[str, list[list[float]]]) -> str:
    names = list(found)
    lines = [title, "", "| moment (ms from exec) | " + " | ".join(names) + " |"]
    lines.append("| --- |" + " ---: |" * len(names))
    for index, moment in enumerate(MOMENTS):
        cells = [median_ms([run[index] for run in found[name]]) for name in names]
        lines.append(f"| {moment} | " + " | ".join(cells) + " |")
    tails = [median_ms([run[3] - run[1] for run in found[name]]) for name in names]
    lines.append("| camera closed to process gone | " + " | ".join(tails) + " |")
    return "\n".join(lines)
