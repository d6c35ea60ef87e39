"""The .env files: snap is their only reader (the timer's units pass none to systemd, so
--check reads them as every run does), with python-dotenv's rules, and only snap's settings
are taken from them; while the settings are read they stand in os.environ, where environs
looks, and a variable of the real environment wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Collection, Iterator
from pathlib import Path

from .errors import ConfigError
from .masking import mask_url

log = logging.getLogger("snap")


def check_text(name: str, raw: str, shown: str) -> None:
    """Text every later step can take: UTF-8 (the environment may hold any bytes), no NUL."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name}={shown!r} is invalid: not UTF-8 text") from None
    if "\0" in raw:
        raise ConfigError(f"{name}={shown!r} is invalid: it holds a NUL character")


def open_nonblocking(path, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def check_env_file(path: Path) -> None:
    """A .env that is a regular file (opening a FIFO would block) of UTF-8 text."""
    try:
        with open(path, "rb", opener=open_nonblocking) as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError(f"cannot read {path}: not a regular file")
            data = file.read()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line}"
        ) from None


def read_env_files(path: Path, settings_names: Collection[str]) -> dict[str, str]:
    """The .env file at `path` if there is one, then camera N's own .env.cameraN beside it
    (N: CAMERA_NUM), whose values win over the shared file's. Only the settings named are
    taken from them; any other name is left out, with a warning when it looks like a
    misspelt setting."""
    files = [path] if os.path.lexists(path) else []
    for file in files:
        check_env_file(file)
    values = {file: env_file_values(file) for file in files}
    camera = camera_env_file(path, values.get(path, {}).get("CAMERA_NUM"))
    if os.path.lexists(camera):
        check_env_file(camera)
        values[camera] = env_file_values(camera)
        files.insert(0, camera)
    settings: dict[str, str] = {}
    for file in files:
        for name, value in values[file].items():
            if name in settings_names and value is not None:
                settings.setdefault(name, value)
        warn_unknown_names(file, values[file], settings_names)
    return settings


@contextlib.contextmanager
def in_environment(settings: dict[str, str]) -> Iterator[None]:
    """The settings of the env files in os.environ, where environs reads them, while they
    are read; a real environment variable wins. Nothing else of the files gets there."""
    added = [name for name in settings if name not in os.environ]
    for name in added:
        value = settings[name]
        check_text(name, value, mask_url(value) if name == "REDIS_URL" else value)
    try:
        os.environ.update({name: settings[name] for name in added})
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def env_file_values(path: Path) -> dict[str, str | None]:
    """The variables an env file sets, read with python-dotenv's rules: a # comment may
    follow a value, export is allowed, ${NAME} is replaced outside single quotes."""
    from dotenv import dotenv_values

    try:
        return dict(dotenv_values(path))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None


def camera_env_file(path: Path, file_camera: str | None) -> Path:
    """PATH.cameraN, for the camera the run is for: the environment's CAMERA_NUM (a camera's
    timer sets it), else the file's; camera 0 for a value that is not a camera number (the
    setting's own check says so)."""
    number = os.environ.get("CAMERA_NUM") or file_camera or "0"
    number = str(int(number)) if re.fullmatch(r"[0-9]+", number.strip()) else "0"
    return Path(f"{path}.camera{number}")


# Read from the environment all the same, though no settings (see docs/configuration.md).
OTHER_VARIABLES = (
    "STATE_DIRECTORY",
    "XDG_STATE_HOME",
    "LIBCAMERA_LOG_LEVELS",
    "SUDO_USER",
    "JOURNAL_STREAM",
)


def warn_unknown_names(path: Path, names, settings_names: Collection[str]) -> None:
    """One warning per name in an env file that is no setting but looks like one: a
    misspelt setting would otherwise be ignored without a word."""
    import difflib

    for name in names:
        if name in settings_names or name in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(name.upper(), list(settings_names), n=1, cutoff=0.8)
        if close:
            log.warning(
                "%s in %s is not a setting and is ignored; did you mean %s?", name, path, close[0]
            )
