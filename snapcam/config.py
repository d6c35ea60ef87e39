"""The settings: one table of every variable snap reads, and their validation.

Variables come from the environment and the .env files (the environment wins; envfile.py
reads the files), through environs. Each is checked before the camera is touched; a bad one
is a ConfigError naming it. Importing this module loads neither redis nor picamera2.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from .controls import check_autofocus, parse_controls
from .envfile import check_text, in_environment, read_env_files
from .errors import ConfigError, UsageError
from .masking import mask_url, password_misplaced
from .night import check_night
from .shot import CONTRACT_FIELDS, to_snake_case

log = logging.getLogger("snap")

# Redis refuses an EXPIRE whose moment in milliseconds overflows 64 bits (2**63 ms is about
# 9.2e15 s from 1970); inside MULTI the HSET lands all the same, leaving a key that never
# expires. 10**15 s is far inside that, on any Redis and any clock.
IMAGE_EXPIRY_MAX = 10**15
# The longest wait the platform takes: a socket wait is handed to poll() as a C int of
# milliseconds, which wraps past 2**31 - 1 ms; timers and locks overflow later.
TIMEOUT_MAX = 2_147_483
# What a front end lists as shots (SCAN MATCH image:*, an index ON HASH PREFIX 1 image:),
# whatever this Pi's own IMAGE_KEY_PREFIX.
SHOTS_LISTED = "image"

SECONDS = f"a number of seconds greater than 0, at most {TIMEOUT_MAX}"
SECONDS_OR_ZERO = f"a number of seconds from 0 to {TIMEOUT_MAX}"
BOOLEAN = "true or false"


class Setting(NamedTuple):
    name: str
    default: Any
    meaning: str
    kind: str = "str"  # the environs parser: str, int, float or bool
    expected: str = ""  # what a valid value is, for the error line
    minimum: float | None = None
    above_minimum: bool = False  # the minimum itself is not allowed
    maximum: float | None = None
    check: Callable[[Any], Any] | None = None  # further validation of a parsed value


def check_redis_url(url: str) -> str:
    """The URL's parts a mistake is likely in, without importing redis-py (a tenth of a second
    better spent while the camera starts): its scheme, port, database and timeouts. What
    else redis-py refuses is told when snap connects (redis_options in store.py)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    if password_misplaced(url):
        raise ValueError(
            "a /, ?, # or @ in a password must be percent-encoded (%2F, %3F, %23, %40)"
        )
    parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    options = dict(parse_qsl(parts.query))
    database = options.get("db", "") if parts.scheme == "unix" else parts.path.strip("/")
    if not re.fullmatch(r"\d*", database):
        raise ValueError(f"the database {database!r} is not a number")
    for option in ("socket_timeout", "socket_connect_timeout"):
        check_timeout_option(option, options.get(option))
    return url


def check_timeout_option(option: str, value: str | None) -> None:
    if value is None:
        return
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{option}={value!r} is not a number of seconds") from None
    if not 0 < seconds <= TIMEOUT_MAX:
        raise ValueError(
            f"{option}={seconds:g} is over {TIMEOUT_MAX} s, the longest wait the platform takes"
            if seconds > TIMEOUT_MAX
            else f"{option}={seconds:g} is not a number of seconds greater than 0"
        )


def check_key_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", prefix) or prefix.endswith(":"):
        raise ValueError(
            "expected letters, digits and _.:- not ending in ':' (e.g. image or image:garden)"
        )
    return prefix


def parse_metadata_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in names:
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
            raise ValueError(
                f"{name!r} is not a metadata name (expected names like ExposureTime,AnalogueGain)"
            )
        if to_snake_case(name) in CONTRACT_FIELDS:
            raise ValueError(f"{name} is already stored as {to_snake_case(name)}")
    return names


SETTINGS = {
    s.name: s
    for s in (
        Setting("REDIS_URL", "redis://localhost:6379", "Redis URL: redis://, rediss:// or unix://",
                expected="a URL", check=check_redis_url),
        Setting("REDIS_TIMEOUT", 5.0, "seconds to wait for Redis to connect or answer",
                "float", SECONDS, 0, True, TIMEOUT_MAX),
        Setting("REDIS_CLUSTER", False, "REDIS_URL names a node of a Redis Cluster",
                "bool", BOOLEAN),
        Setting("IMAGE_EXPIRY", 3600, "seconds a shot stays in Redis (its TTL)",
                "int", f"a whole number of seconds from 1 to {IMAGE_EXPIRY_MAX}", 1,
                maximum=IMAGE_EXPIRY_MAX),
        Setting("IMAGE_KEY_PREFIX", "image", "shots are stored as PREFIX:<unix seconds>",
                expected="a prefix", check=check_key_prefix),
        Setting("CAMERA_NAME", None, "stored in each shot's camera field (default: hostname)",
                expected="a name"),
        Setting("STATUS_PREFIX", "snap:camera",
                "each camera's status is the hash PREFIX:<CAMERA_NAME> (set empty: none)",
                expected="a prefix", check=check_key_prefix),
        Setting("CAMERA_NUM", 0, "camera to use, as listed by --check",
                "int", "a camera number, 0 or more", 0),
        Setting("IMAGE_WIDTH", None, "picture width in pixels (default: full sensor)",
                "int", "a width in pixels", 64),
        Setting("IMAGE_HEIGHT", None, "picture height in pixels (set both or neither)",
                "int", "a height in pixels", 64),
        Setting("JPEG_QUALITY", 90, "JPEG quality, 1-95",
                "int", "a whole number from 1 to 95", 1, maximum=95),
        Setting("CAMERA_HFLIP", False, "mirror the picture left to right", "bool", BOOLEAN),
        Setting("CAMERA_VFLIP", False, "flip the picture upside down", "bool", BOOLEAN),
        Setting("CAMERA_CONTROLS", (), "libcamera controls, e.g. AwbMode=Daylight,LensPosition=2.0",
                expected="controls", check=parse_controls),
        Setting("CAMERA_AUTOFOCUS", False, "run one autofocus cycle before the shot",
                "bool", BOOLEAN),
        Setting("AUTOFOCUS_TIMEOUT", 5.0, "seconds the autofocus cycle may take",
                "float", SECONDS, 0, True, TIMEOUT_MAX),
        Setting("SETTLE_TIMEOUT", 3.0, "seconds to wait for exposure to settle (0: don't)",
                "float", SECONDS_OR_ZERO, 0, maximum=TIMEOUT_MAX),
        Setting("MIN_LUX", None, "no shot while the camera's lux is below this (default: always)",
                "int", "a whole number of lux, 0 or more", 0),
        Setting("NIGHT_LUX", None, "below this lux, the shot is taken with NIGHT_CONTROLS",
                "int", "a whole number of lux, 0 or more", 0),
        Setting("NIGHT_CONTROLS", (), "libcamera controls set for a night shot, e.g. "
                "AeExposureMode=Long", expected="controls", check=parse_controls),
        Setting("NIGHT_SETTLE_TIMEOUT", 10.0, "seconds to settle again with NIGHT_CONTROLS",
                "float", SECONDS, 0, True, TIMEOUT_MAX),
        Setting("CAPTURE_TIMEOUT", 10.0, "seconds the capture itself may take",
                "float", SECONDS, 0, True, TIMEOUT_MAX),
        Setting("CAMERA_METADATA", (), "metadata to store too, e.g. ExposureTime,AnalogueGain",
                expected="metadata names", check=parse_metadata_names),
        Setting("RUN_TIMEOUT", 60.0, "seconds a whole run may take, hung camera or Redis included",
                "float", SECONDS, 0, True, TIMEOUT_MAX),
        Setting("LOCK_TIMEOUT", 20.0, "seconds to wait while another run uses the same camera",
                "float", SECONDS_OR_ZERO, 0, maximum=TIMEOUT_MAX),
        Setting("LOCK_DIR", "/run/lock", "where the per-camera lock file lives",
                expected="a directory"),
        Setting("SPOOL_DIR", None,
                "where unsent shots wait (default $STATE_DIRECTORY or ~/.local/state/snap/spool)",
                expected="a directory"),
        Setting("SPOOL_MAX_MB", 200, "spool size limit; past it the oldest shots are dropped",
                "int", "a whole number of MB, 1 or more", 1),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Config:
    """The validated settings, one field per variable, named as the variable in lower case."""

    redis_url: str
    redis_timeout: float
    redis_cluster: bool
    image_expiry: int
    image_key_prefix: str
    camera_name: str
    status_prefix: str
    camera_num: int
    image_width: int | None
    image_height: int | None
    jpeg_quality: int
    camera_hflip: bool
    camera_vflip: bool
    camera_controls: tuple[tuple[str, tuple[Any, ...]], ...]
    camera_autofocus: bool
    autofocus_timeout: float
    settle_timeout: float
    min_lux: int | None
    night_lux: int | None
    night_controls: tuple[tuple[str, tuple[Any, ...]], ...]
    night_settle_timeout: float
    capture_timeout: float
    camera_metadata: tuple[str, ...]
    run_timeout: float
    lock_timeout: float
    lock_dir: Path
    spool_dir: Path
    spool_max_mb: int

    @property
    def size(self) -> tuple[int, int] | None:
        if self.image_width is None or self.image_height is None:
            return None
        return (self.image_width, self.image_height)

    @property
    def spool_max_bytes(self) -> int:
        return self.spool_max_mb * 1_000_000


def default_env_file() -> Path:
    """The .env beside snap.py, in the checkout that holds this package."""
    return Path(__file__).absolute().parent.parent / ".env"


def default_spool_dir() -> Path:
    state_directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory:
        return Path(state_directory)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "snap" / "spool"


def read_setting(env, setting: Setting) -> Any:
    """One variable through environs; unset or empty gives the default."""
    from environs import EnvError
    from marshmallow.validate import Range

    raw = env.str(setting.name, "")
    if raw == "":
        return setting.default
    shown = mask_url(raw) if setting.name == "REDIS_URL" else raw
    check_text(setting.name, raw, shown)
    options = {}
    if setting.minimum is not None or setting.maximum is not None:
        options["validate"] = Range(
            min=setting.minimum, max=setting.maximum, min_inclusive=not setting.above_minimum
        )
    try:
        value = getattr(env, setting.kind)(setting.name, **options)
        return setting.check(value) if setting.check else value
    except EnvError as error:
        raise ConfigError(
            f"{setting.name}={shown!r} is invalid: expected {setting.expected}"
        ) from error
    except ValueError as error:
        raise ConfigError(f"{setting.name}={shown!r} is invalid: {error}") from error


def check_status_prefix(env, values: dict[str, Any]) -> None:
    """Set and empty turns the status off; otherwise its keys must lie outside the shots'
    first prefix segment and outside image:*, which front ends list and index whatever this
    Pi's IMAGE_KEY_PREFIX (another Pi's shots may be there)."""
    if env.str("STATUS_PREFIX", None) == "":
        values["status_prefix"] = ""
        return
    status, shots = values["status_prefix"], values["image_key_prefix"]
    top = shots.split(":")[0]
    if f"{status}:".startswith(f"{top}:") or shots.startswith(f"{status}:"):
        raise ConfigError(
            f"STATUS_PREFIX={status!r} is invalid: it overlaps the shots' keys "
            f"({shots}:<seconds>, listed by front ends as {top}:*); use e.g. snap:camera"
        )
    if f"{status}:".startswith(f"{SHOTS_LISTED}:"):
        raise ConfigError(
            f"STATUS_PREFIX={status!r} is invalid: front ends list {SHOTS_LISTED}:* as shots, "
            "whatever IMAGE_KEY_PREFIX; use e.g. snap:camera"
        )


@contextlib.contextmanager
def garbage_collected():
    """Collect the cyclic garbage made in the block, and only that. snap.py turns the collector
    off for a run, and importing environs and marshmallow leaves some 300 objects in cycles
    (functions and classes made and dropped), memory the camera can use instead. What existed
    before is frozen meanwhile, so that the collection scans only the block's objects (about
    2 ms)."""
    gc.freeze()
    try:
        yield
    finally:
        try:
            gc.collect()
        finally:
            gc.unfreeze()


def load_config(env_file: Path | None) -> Config:
    """Read and validate every variable from the environment and the .env file."""
    with garbage_collected():
        return read_config(env_file)


def read_config(env_file: Path | None) -> Config:
    from environs import Env

    if env_file is not None and not os.path.lexists(env_file):
        raise UsageError(f"--env-file: no such file: {env_file}")
    env = Env()
    with in_environment(read_env_files(env_file or default_env_file(), SETTINGS)):
        values = {name.lower(): read_setting(env, setting) for name, setting in SETTINGS.items()}
        if (values["image_width"] is None) != (values["image_height"] is None):
            missing = "IMAGE_HEIGHT" if values["image_height"] is None else "IMAGE_WIDTH"
            raise ConfigError(
                f"{missing} is not set: set IMAGE_WIDTH and IMAGE_HEIGHT together, or neither"
            )
        check_status_prefix(env, values)
        check_autofocus(values["camera_controls"], values["camera_autofocus"])
        check_night(values)
    values["camera_name"] = values["camera_name"] or socket.gethostname()
    values["lock_dir"] = Path(values["lock_dir"])
    values["spool_dir"] = Path(values["spool_dir"] or default_spool_dir())
    return Config(**values)
