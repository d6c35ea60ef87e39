"""Starting snap.py under whichever python3 ran it: the checkout's .venv if that one lacks
snap's packages, or one line saying how to install them (exit 69).

Runs before anything else, so it imports nothing but the standard library's lightest parts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

from .logs import format_line

CHECKOUT = Path(__file__).absolute().parent.parent
VENV = CHECKOUT / ".venv"
REQUIRED = ("redis", "environs")
# Given to the interpreter snap.py hands itself to, so that a .venv that does not help is
# reported instead of being run again and again: a -X option, which a .venv/bin/python that
# clears the environment still passes on with the arguments.
HANDED_OVER = "snap_handed_to_venv"


def missing_modules() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def install_hint() -> str:
    return (
        f"install them as the README does: cd {CHECKOUT} && python3 -m venv "
        "--system-site-packages .venv && .venv/bin/pip install -r requirements.txt"
    )


def ensure_dependencies() -> None:
    """Return if snap's packages can be imported; else run snap.py again, with the same
    arguments, under the .venv's python, or say what is missing and exit 69."""
    handed_over = HANDED_OVER in sys._xoptions
    missing = missing_modules()
    if not missing:
        return
    python = VENV / "bin" / "python"
    if not handed_over and os.access(python, os.X_OK):
        with contextlib.suppress(OSError):  # else the hint below
            os.execv(str(python), [str(python), "-X", HANDED_OVER, *sys.argv])
    where = VENV if handed_over else Path(sys.executable)
    message = f"{' and '.join(missing)} not installed for {where}; {install_hint()}"
    with contextlib.suppress(AttributeError, OSError, ValueError):  # stderr closed or full
        sys.stderr.write(format_line(logging.ERROR, message) + "\n")
        sys.stderr.flush()
    sys.exit(os.EX_UNAVAILABLE)
