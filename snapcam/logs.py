"""What snap's log lines look like where they land: the journal, a file, a terminal.

In the journal (stderr is the stream systemd's JOURNAL_STREAM names) every line starts with
its sd-daemon priority, <3> for an error, so `journalctl -p warning` finds it, and the level
is not spelled out again. In a regular file (cron's ~/snap.log) every line starts with the
time. Anywhere else, a terminal or a pipe: `snap: error: ...`.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from typing import TextIO

JOURNAL, FILE, TERMINAL = "journal", "file", "terminal"
LEVEL_WORDS = {logging.CRITICAL: "error: ", logging.ERROR: "error: ", logging.WARNING: "warning: "}
# sd-daemon(3): <3> SD_ERR, <4> SD_WARNING, <6> SD_INFO, <7> SD_DEBUG
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"


def destination(stream: TextIO) -> str:
    """JOURNAL, FILE or TERMINAL: where the stream's lines end up."""
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return TERMINAL
    if os.environ.get("JOURNAL_STREAM") == f"{status.st_dev}:{status.st_ino}":
        return JOURNAL
    return FILE if stat.S_ISREG(status.st_mode) else TERMINAL


def priority(level: int) -> int:
    return next((number for above, number in PRIORITIES.items() if level >= above), 7)


def prefixed(text: str, level: int, where: str, created: float) -> str:
    """Every line of text marked for where it goes; the first also names snap."""
    first, *rest = text.split("\n")
    if where == JOURNAL:
        mark = f"<{priority(level)}>"
        return "\n".join([f"{mark}snap: {first}", *(mark + line for line in rest)])
    word = LEVEL_WORDS.get(level, "")
    if where == FILE:
        when = time.strftime(TIME_FORMAT, time.localtime(created))
        return "\n".join([f"{when} snap: {word}{first}", *(f"{when} {line}" for line in rest)])
    return "\n".join([f"snap: {word}{first}", *rest])


def format_line(level: int, message: str) -> str:
    """A line for stderr written outside logging (usage errors, the launcher)."""
    return prefixed(message, level, destination(sys.stderr), time.time())


class LineFormatter(logging.Formatter):
    def __init__(self, where: str):
        super().__init__("%(message)s")
        self.where = where

    def format(self, record: logging.LogRecord) -> str:
        return prefixed(super().format(record), record.levelno, self.where, record.created)
