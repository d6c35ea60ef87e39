#!/usr/bin/env python3
"""snap: take one photo with a Raspberry Pi camera, store it in Redis, exit.

Run it from a systemd timer or cron for a photo every N seconds. Each shot is a
Redis hash PREFIX:<unix seconds> holding image_data, timestamp, mime_type and lux,
expiring after IMAGE_EXPIRY seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import io
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__version__ = "1.0.0"

log = logging.getLogger("snap")

# Exit codes, from sysexits.h.
EXIT_OK = 0
EXIT_USAGE = 64
EXIT_CAMERA = 69
EXIT_SOFTWARE = 70
EXIT_CANTCREAT = 73
EXIT_REDIS = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78
EXIT_CODES = (
    (EXIT_OK, "the shot was stored"),
    (EXIT_USAGE, "bad command line"),
    (EXIT_CAMERA, "camera unavailable: none detected, busy, failed or hung"),
    (EXIT_SOFTWARE, "internal error: please report it with the --verbose output"),
    (EXIT_CANTCREAT, "SPOOL_DIR, the --output file or a unit file cannot be written"),
    (EXIT_REDIS, "Redis unavailable or refused the write (shot spooled), or camera still locked"),
    (EXIT_NOPERM, "permission refused: Redis authentication or ACL, or installing not as root"),
    (EXIT_CONFIG, "invalid configuration"),
)

MIME_TYPE = "image/jpeg"
# Fields of the data contract; CAMERA_METADATA may not shadow them.
CONTRACT_FIELDS = ("image_data", "timestamp", "mime_type", "lux", "camera")


class SnapError(Exception):
    """A failure reported as one line and an exit code."""

    exit_code = 1


class UsageError(SnapError):
    exit_code = EXIT_USAGE


class ConfigError(SnapError):
    exit_code = EXIT_CONFIG


class CameraError(SnapError):
    exit_code = EXIT_CAMERA


class OutputError(SnapError):
    exit_code = EXIT_CANTCREAT


class RedisUnavailable(SnapError):
    exit_code = EXIT_REDIS


class RedisDenied(SnapError):
    exit_code = EXIT_NOPERM


class LockError(SnapError):
    exit_code = EXIT_REDIS  # EX_TEMPFAIL: the next run will find the camera free


class SpoolError(SnapError):
    exit_code = EXIT_CANTCREAT


# --- Configuration -----------------------------------------------------------


class Setting(NamedTuple):
    name: str
    default: Any
    meaning: str


SETTINGS = {
    s.name: s
    for s in (
        Setting("REDIS_URL", "redis://localhost:6379", "Redis URL: redis://, rediss:// or unix://"),
        Setting("REDIS_TIMEOUT", 5.0, "seconds to wait for Redis to connect or answer"),
        Setting("REDIS_CLUSTER", False, "REDIS_URL names a node of a Redis Cluster"),
        Setting("IMAGE_EXPIRY", 3600, "seconds a shot stays in Redis (its TTL)"),
        Setting("IMAGE_KEY_PREFIX", "image", "shots are stored as PREFIX:<unix seconds>"),
        Setting("CAMERA_NAME", None, "stored in each shot's camera field (default: hostname)"),
        Setting("CAMERA_NUM", 0, "camera to use, as listed by --check"),
        Setting("IMAGE_WIDTH", None, "picture width in pixels (default: full sensor)"),
        Setting("IMAGE_HEIGHT", None, "picture height in pixels (set both or neither)"),
        Setting("JPEG_QUALITY", 90, "JPEG quality, 1-95"),
        Setting("CAMERA_HFLIP", False, "mirror the picture left to right"),
        Setting("CAMERA_VFLIP", False, "flip the picture upside down"),
        Setting("CAMERA_AUTOFOCUS", False, "run one autofocus cycle before the shot"),
        Setting("AUTOFOCUS_TIMEOUT", 5.0, "seconds the autofocus cycle may take"),
        Setting("SETTLE_TIMEOUT", 3.0, "seconds to wait for exposure to settle (0: don't)"),
        Setting("CAPTURE_TIMEOUT", 10.0, "seconds the capture itself may take"),
        Setting("CAMERA_METADATA", "", "metadata to store too, e.g. ExposureTime,AnalogueGain"),
        Setting("RUN_TIMEOUT", 60.0, "seconds a whole run may take, hung camera or Redis included"),
        Setting("LOCK_TIMEOUT", 20.0, "seconds to wait while another run uses the same camera"),
        Setting("LOCK_DIR", "/run/lock", "where the per-camera lock file lives"),
        Setting(
            "SPOOL_DIR",
            None,
            "where unsent shots wait (default $STATE_DIRECTORY or ~/.local/state/snap/spool)",
        ),
        Setting("SPOOL_MAX_MB", 200, "spool size limit; past it the oldest shots are dropped"),
    )
}


@dataclass(frozen=True)
class Config:
    redis_url: str
    redis_timeout: float
    redis_cluster: bool
    image_expiry: int
    key_prefix: str
    camera_name: str
    camera_num: int
    size: tuple[int, int] | None
    jpeg_quality: int
    hflip: bool
    vflip: bool
    autofocus: bool
    autofocus_timeout: float
    settle_timeout: float
    capture_timeout: float
    metadata_names: tuple[str, ...]
    run_timeout: float
    lock_timeout: float
    lock_dir: Path
    spool_dir: Path
    spool_max_bytes: int


def default_env_file() -> Path:
    return Path(__file__).resolve().parent / ".env"


def default_spool_dir() -> Path:
    state_directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory:
        return Path(state_directory)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "snap" / "spool"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ****."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:****@{host}"
        query = [
            (name, "****" if name == "password" else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))
    except ValueError:
        return "<unparsable URL>"


def url_password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        query_password = dict(parse_qsl(parts.query)).get("password")
        return parts.password or query_password
    except ValueError:
        return None


def read_setting(env, kind: str, name: str, allowed: str, **options) -> Any:
    """One variable through environs; unset or empty gives the default."""
    raw = env.str(name, "")
    if raw == "":
        return SETTINGS[name].default
    from environs import EnvError

    try:
        return getattr(env, kind)(name, **options)
    except EnvError as error:
        shown = mask_url(raw) if name == "REDIS_URL" else raw
        raise ConfigError(f"{name}={shown!r} is invalid: expected {allowed}") from error


def to_snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def parse_metadata_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in names:
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
            raise ConfigError(
                f"CAMERA_METADATA={raw!r} is invalid: {name!r} is not a metadata name "
                "(expected names like ExposureTime,AnalogueGain)"
            )
        if to_snake_case(name) in CONTRACT_FIELDS:
            raise ConfigError(
                f"CAMERA_METADATA={raw!r} is invalid: {name} is already stored "
                f"as {to_snake_case(name)}"
            )
    return names


def check_key_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", prefix) or prefix.endswith(":"):
        raise ConfigError(
            f"IMAGE_KEY_PREFIX={prefix!r} is invalid: expected letters, digits and _.:- "
            "not ending in ':' (e.g. image or image:garden)"
        )
    return prefix


def check_redis_url(url: str) -> str:
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"REDIS_URL={mask_url(url)!r} is invalid: expected a redis://, rediss:// or unix:// URL"
        )
    import redis

    try:
        redis.ConnectionPool.from_url(url)  # parses only: nothing connects
    except ValueError as error:
        raise ConfigError(f"REDIS_URL={mask_url(url)!r} is invalid: {error}") from error
    return url


def load_config(env_file: Path | None) -> Config:
    """Read and validate every variable from the environment and the .env file."""
    from environs import Env
    from marshmallow.validate import Range

    env = Env()
    if env_file is not None:
        if not env_file.is_file():
            raise UsageError(f"--env-file: no such file: {env_file}")
        env.read_env(str(env_file), recurse=False, override=False)
    elif default_env_file().is_file():
        env.read_env(str(default_env_file()), recurse=False, override=False)

    positive = Range(min=0, min_inclusive=False)
    seconds = "a number of seconds greater than 0"
    width = read_setting(env, "int", "IMAGE_WIDTH", "a width in pixels", validate=Range(min=64))
    height = read_setting(env, "int", "IMAGE_HEIGHT", "a height in pixels", validate=Range(min=64))
    if (width is None) != (height is None):
        missing = "IMAGE_HEIGHT" if height is None else "IMAGE_WIDTH"
        raise ConfigError(
            f"{missing} is not set: set IMAGE_WIDTH and IMAGE_HEIGHT together, or neither"
        )
    return Config(
        redis_url=check_redis_url(read_setting(env, "str", "REDIS_URL", "a URL")),
        redis_timeout=read_setting(env, "float", "REDIS_TIMEOUT", seconds, validate=positive),
        redis_cluster=read_setting(env, "bool", "REDIS_CLUSTER", "true or false"),
        image_expiry=read_setting(
            env,
            "int",
            "IMAGE_EXPIRY",
            "a whole number of seconds, 1 or more",
            validate=Range(min=1),
        ),
        key_prefix=check_key_prefix(read_setting(env, "str", "IMAGE_KEY_PREFIX", "a prefix")),
        camera_name=read_setting(env, "str", "CAMERA_NAME", "a name") or socket.gethostname(),
        camera_num=read_setting(
            env, "int", "CAMERA_NUM", "a camera number, 0 or more", validate=Range(min=0)
        ),
        size=None if width is None else (width, height),
        jpeg_quality=read_setting(
            env, "int", "JPEG_QUALITY", "a whole number from 1 to 95", validate=Range(1, 95)
        ),
        hflip=read_setting(env, "bool", "CAMERA_HFLIP", "true or false"),
        vflip=read_setting(env, "bool", "CAMERA_VFLIP", "true or false"),
        autofocus=read_setting(env, "bool", "CAMERA_AUTOFOCUS", "true or false"),
        autofocus_timeout=read_setting(
            env, "float", "AUTOFOCUS_TIMEOUT", seconds, validate=positive
        ),
        settle_timeout=read_setting(
            env, "float", "SETTLE_TIMEOUT", "a number of seconds, 0 or more", validate=Range(min=0)
        ),
        capture_timeout=read_setting(env, "float", "CAPTURE_TIMEOUT", seconds, validate=positive),
        metadata_names=parse_metadata_names(env.str("CAMERA_METADATA", "")),
        run_timeout=read_setting(env, "float", "RUN_TIMEOUT", seconds, validate=positive),
        lock_timeout=read_setting(
            env, "float", "LOCK_TIMEOUT", "a number of seconds, 0 or more", validate=Range(min=0)
        ),
        lock_dir=Path(read_setting(env, "str", "LOCK_DIR", "a directory")),
        spool_dir=Path(read_setting(env, "str", "SPOOL_DIR", "a directory") or default_spool_dir()),
        spool_max_bytes=read_setting(
            env, "int", "SPOOL_MAX_MB", "a whole number of MB, 1 or more", validate=Range(min=1)
        )
        * 1_000_000,
    )


# --- Camera ------------------------------------------------------------------

NO_CAMERA_HINT = (
    "check the ribbon cable, camera_auto_detect=1 in config.txt and 'rpicam-hello --list-cameras'"
)
BUSY_RETRY_SECONDS = 3.0


@dataclass(frozen=True)
class Shot:
    jpeg: memoryview
    metadata: dict
    timestamp: int


def import_picamera2(verbose: bool):
    # libcamera reads its log level once, when it is loaded.
    if not verbose:
        os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:ERROR")
        logging.getLogger("picamera2").setLevel(logging.ERROR)
    try:
        import picamera2
    except ImportError as error:
        raise CameraError(
            f"picamera2 is not installed ({error}): sudo apt install python3-picamera2"
        ) from error
    return picamera2


def detected_cameras(picamera2) -> list[dict]:
    return picamera2.Picamera2.global_camera_info()


def is_busy(error: RuntimeError) -> bool:
    # picamera2 raises "Camera __init__ sequence did not complete" from libcamera's
    # "Failed to acquire camera: Device or resource busy".
    return "busy" in f"{error} {error.__cause__}"


def open_camera(picamera2, camera_num: int):
    """Picamera2(camera_num), retrying briefly while another program holds the camera."""
    cameras = detected_cameras(picamera2)
    if camera_num >= len(cameras):
        found = f"{len(cameras)} camera(s) found" if cameras else "no camera detected"
        raise CameraError(f"camera {camera_num} not available: {found}; {NO_CAMERA_HINT}")
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        try:
            return picamera2.Picamera2(camera_num)
        except IndexError as error:  # picamera2 <= 0.3.36 when the camera is gone
            raise CameraError(f"no camera detected; {NO_CAMERA_HINT}") from error
        except RuntimeError as error:
            if not is_busy(error):
                cause = f" ({error.__cause__})" if error.__cause__ else ""
                raise CameraError(f"camera {camera_num} failed to open: {error}{cause}") from error
            if time.monotonic() > deadline:
                raise CameraError(
                    f"camera {camera_num} is busy: another program holds it "
                    "(rpicam-still, a preview, ...)"
                ) from error
            time.sleep(0.5)


def main_format(picamera2) -> str:
    """YUV420 takes half the memory of BGR888, but picamera2 encodes a JPEG from it only
    since 0.3.27, which brought CompletedRequest.FASTER_JPEG; Bullseye's is older."""
    if hasattr(getattr(picamera2, "CompletedRequest", None), "FASTER_JPEG"):
        return "YUV420"
    return "BGR888"


def configure_camera(picam2, config: Config, pixel_format: str) -> None:
    from libcamera import Transform

    main_stream = {"format": pixel_format}
    if config.size is not None:
        main_stream["size"] = config.size
    still = picam2.create_still_configuration(
        main=main_stream,
        raw=None,
        buffer_count=1,
        transform=Transform(hflip=config.hflip, vflip=config.vflip),
    )
    try:
        picam2.configure(still)
    except OSError as error:
        raise CameraError(
            f"not enough camera memory for {main_stream.get('size', 'full resolution')}: "
            "set IMAGE_WIDTH and IMAGE_HEIGHT lower or raise cma in config.txt"
        ) from error
    picam2.options["quality"] = config.jpeg_quality


def cancel_pending(picam2) -> None:
    """Drop the jobs a timeout or a signal left pending: they would block any later stop().

    Bullseye's picamera2 (0.3.12) lacks cancel_all_and_flush(), and has no timeouts either.
    """
    cancel = getattr(picam2, "cancel_all_and_flush", None)
    if cancel is not None:
        cancel()


def wait_for_exposure(picam2, timeout: float) -> bool:
    """Read frames until auto-exposure has converged; False if it did not in time."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            metadata = picam2.capture_metadata(wait=remaining)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            return False
        if metadata.get("AeState") == 2 or metadata.get("AeLocked") is True:
            return True
    return False


def autofocus(picam2, timeout: float) -> None:
    if "AfMode" not in picam2.camera_controls:
        log.warning("warning: this camera has no autofocus; capturing without it")
        return
    try:
        focused = picam2.autofocus_cycle(wait=timeout)
    except concurrent.futures.TimeoutError:
        cancel_pending(picam2)
        log.warning("warning: autofocus did not finish within %g s; capturing anyway", timeout)
        return
    if not focused:
        log.warning("warning: autofocus failed; capturing anyway")


def capture(picam2, timeout: float) -> Shot:
    buffer = io.BytesIO()
    try:
        metadata = picam2.capture_file(buffer, format="jpeg", wait=timeout)
    except concurrent.futures.TimeoutError as error:
        raise CameraError(f"camera hung: no picture within {timeout:g} s") from error
    # getbuffer(), not getvalue(): the JPEG reaches the socket without another copy.
    return Shot(jpeg=buffer.getbuffer(), metadata=metadata, timestamp=int(time.time()))


def take_shot(config: Config, verbose: bool) -> Shot:
    picamera2 = import_picamera2(verbose)
    watchdog.step("opening the camera")
    picam2 = open_camera(picamera2, config.camera_num)
    try:
        configure_camera(picam2, config, main_format(picamera2))
        watchdog.step("starting the camera")
        picam2.start(show_preview=False)
        if config.settle_timeout > 0:
            watchdog.step("waiting for exposure to settle")
            if not wait_for_exposure(picam2, config.settle_timeout):
                log.warning(
                    "warning: exposure did not settle within %g s; capturing anyway",
                    config.settle_timeout,
                )
        if config.autofocus:
            watchdog.step("autofocus")
            autofocus(picam2, config.autofocus_timeout)
        watchdog.step("capturing")
        return capture(picam2, config.capture_timeout)
    except RuntimeError as error:
        cancel_pending(picam2)
        raise CameraError(f"camera failed: {error}") from error
    except BaseException:
        cancel_pending(picam2)
        raise
    finally:
        watchdog.step("closing the camera")
        picam2.close()


# --- Storage -----------------------------------------------------------------

SPOOL_DELIVERY_MAX_SHOTS = 20
SPOOL_DELIVERY_MAX_SECONDS = 10.0


def flat_value(value: Any) -> Any:
    """A metadata value as a Redis hash field: numbers stay numbers, tuples join."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (tuple, list)):
        return ",".join(str(flat_value(item)) for item in value)
    return value


def shot_fields(shot: Shot, config: Config) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "image_data": shot.jpeg,
        "timestamp": shot.timestamp,
        "mime_type": MIME_TYPE,
        "camera": config.camera_name,
    }
    lux = shot.metadata.get("Lux")
    if isinstance(lux, (int, float)) and math.isfinite(lux):
        fields["lux"] = int(lux)
    else:
        log.warning("warning: the camera reported no Lux; storing the shot without lux")
    for name in config.metadata_names:
        if name in shot.metadata:
            fields[to_snake_case(name)] = flat_value(shot.metadata[name])
        else:
            log.warning("warning: the camera reported no %s metadata", name)
    return fields


def redis_client(config: Config):
    """A client for REDIS_URL that fails fast: no retries, bounded waits."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client_class = redis.RedisCluster if config.redis_cluster else redis.Redis
    try:
        # A cluster client connects here, to learn which node holds which keys.
        return client_class.from_url(
            config.redis_url,
            socket_timeout=config.redis_timeout,
            socket_connect_timeout=config.redis_timeout,
            retry=Retry(NoBackoff(), 0),
        )
    except redis_errors() as error:
        raise redis_failure(error, config) from error


def redis_errors() -> tuple[type[Exception], ...]:
    """What redis-py raises for a server or connection problem; the cluster client's own
    exception is no RedisError."""
    import redis
    from redis.exceptions import RedisClusterException

    return (redis.RedisError, RedisClusterException)


def redis_failure(error: Exception, config: Config) -> SnapError:
    """Translate a redis-py exception into one clean line, never echoing the command."""
    import redis

    # redis-py echoes the failed command, image bytes included, in the error itself;
    # keep only the server's words so even a --verbose traceback stays clean.
    reason = server_reason(error)
    denied = isinstance(error, redis.exceptions.NoPermissionError) or "NOPERM" in reason
    if reason == "EXEC without MULTI":  # the ACL refused MULTI; redis-py reports the EXEC
        denied, reason = True, "this user has no permissions to run the 'multi' command"
    error.args = (reason,)
    where = mask_url(config.redis_url)
    if isinstance(error, redis.exceptions.AskError):  # MOVED or ASK: a cluster node
        return ConfigError(
            f"Redis refused the write: {where} is a Redis Cluster node; set REDIS_CLUSTER=true"
        )
    if denied:
        return RedisDenied(
            f"Redis refused access at {where}: {server_reason(error)}; "
            f"{permission_hint(server_reason(error), config)}"
        )
    if isinstance(error, redis.AuthenticationError):
        return RedisDenied(f"Redis refused access at {where}: {server_reason(error)}")
    if isinstance(error, redis.TimeoutError):
        return RedisUnavailable(
            f"Redis unreachable at {where} (timeout after {config.redis_timeout:g} s)"
        )
    if isinstance(error, redis.ConnectionError):
        return RedisUnavailable(f"Redis unreachable at {where} ({server_reason(error)})")
    if isinstance(error, redis.exceptions.OutOfMemoryError) or "OOM" in server_reason(error):
        return RedisUnavailable("Redis refused the write: out of memory (maxmemory reached)")
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return RedisUnavailable(f"Redis refused the write: {where} is a read-only replica")
    return RedisUnavailable(f"Redis refused the write: {server_reason(error)}")


def permission_hint(reason: str, config: Config) -> str:
    """What an ACL user lacks, as the ACL SETUSER rule that grants it."""
    user = urlsplit(config.redis_url).username or "default"
    command = re.search(r"run the '([\w|]+)' command", reason)
    if command:
        return f"grant it with: ACL SETUSER {user} +{command.group(1).lower()}"
    return f"grant the keys with: ACL SETUSER {user} ~{config.key_prefix}:*"


def server_reason(error: Exception) -> str:
    """The server's own words, without redis-py's echo of the pipelined command."""
    text = str(error.args[0]) if error.args else ""
    first_line = text.rpartition("caused error: ")[2].split("\n")[0]
    printable = "".join(ch if ch.isprintable() else "?" for ch in first_line)
    return printable[:200] or type(error).__name__


def candidate_keys(key_prefix: str, timestamp: int):
    """PREFIX:T, then PREFIX:T-2, PREFIX:T-3, ... for shots taken in the same second."""
    yield f"{key_prefix}:{timestamp}"
    for number in range(2, 1000):
        yield f"{key_prefix}:{timestamp}-{number}"


def store(client, config: Config, fields: dict[str, Any], ttl: int) -> str:
    """Write the shot into a new hash, never into an existing one; return its key.

    WATCH makes the check and the write atomic on the server: if another client
    creates the key in between, EXEC fails and the next name is tried. HSET and
    EXPIRE go in one MULTI/EXEC, so no shot is ever left without its TTL.
    """
    import redis

    try:
        with client.pipeline(transaction=True) as pipe:
            for key in candidate_keys(config.key_prefix, fields["timestamp"]):
                try:
                    pipe.watch(key)
                    if pipe.exists(key):
                        # reset(), not unwatch(): a cluster pipeline stays bound to the
                        # watched key's slot until reset, and the next key has another.
                        pipe.reset()
                        continue
                    pipe.multi()
                    pipe.hset(key, mapping=fields)
                    pipe.expire(key, ttl)
                    pipe.execute()
                    return key
                except redis.WatchError:
                    continue
    except redis_errors() as error:
        raise redis_failure(error, config) from error
    raise RedisUnavailable(f"Redis refused the write: every key for {fields['timestamp']} is taken")


def server_version(client, config: Config) -> str:

    try:
        client.ping()
        server = client.info("server")
    except redis_errors() as error:
        raise redis_failure(error, config) from error
    if "valkey_version" in server:
        return f"Valkey {server['valkey_version']}"
    return f"Redis {server.get('redis_version', 'unknown')}"


@dataclass(frozen=True)
class SpooledShot:
    """A shot kept on disk: NAME.jpg (the JPEG) and NAME.json (the other fields)."""

    jpeg_path: Path
    fields_path: Path
    timestamp: int

    @property
    def size(self) -> int:
        return self.jpeg_path.stat().st_size + self.fields_path.stat().st_size


def prepare_spool(spool_dir: Path) -> None:
    try:
        spool_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpoolError(f"cannot create SPOOL_DIR {spool_dir}: {error.strerror}") from error
    if not os.access(spool_dir, os.W_OK | os.X_OK):
        raise SpoolError(f"SPOOL_DIR {spool_dir} is not writable")


def spool_state(spool_dir: Path) -> str:
    """What --check says of the spool, creating nothing."""
    if spool_dir.is_dir():
        if not os.access(spool_dir, os.W_OK | os.X_OK):
            raise SpoolError(f"SPOOL_DIR {spool_dir} is not writable")
        return f"{spool_summary(spool_dir)} waiting"
    existing = next(parent for parent in spool_dir.parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SpoolError(f"cannot create SPOOL_DIR {spool_dir}: {existing} is not writable")
    return "created by the first shot"


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: a crash never leaves a half file under `path`."""
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def spool(spool_dir: Path, fields: dict[str, Any]) -> None:
    """Keep a shot Redis did not take. The .json is written last: it marks the shot whole."""
    name = f"{fields['timestamp']}-{os.getpid()}-{os.urandom(3).hex()}"
    other_fields = {key: value for key, value in fields.items() if key != "image_data"}
    try:
        write_atomically(spool_dir / f"{name}.jpg", fields["image_data"])
        write_atomically(spool_dir / f"{name}.json", json.dumps(other_fields).encode())
        directory = os.open(spool_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise SpoolError(f"cannot write to SPOOL_DIR {spool_dir}: {error.strerror}") from error


@contextlib.contextmanager
def spool_locked(spool_dir: Path, wait: bool = True):
    """Yield whether this run holds the spool: one run at a time adds, trims or delivers."""
    try:
        fd = os.open(spool_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise SpoolError(f"cannot write to SPOOL_DIR {spool_dir}: {error.strerror}") from error
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def spooled_shots(spool_dir: Path) -> list[SpooledShot]:
    """The whole shots in the spool, oldest first."""
    shots = []
    for fields_path in spool_dir.glob("[0-9]*-*.json"):
        jpeg_path = fields_path.with_suffix(".jpg")
        name = re.match(r"(\d+)-", fields_path.name)
        if name and jpeg_path.exists():
            shots.append(SpooledShot(jpeg_path, fields_path, int(name.group(1))))
    return sorted(shots, key=lambda shot: (shot.timestamp, shot.jpeg_path.name))


def remove_spooled(shot: SpooledShot) -> None:
    shot.fields_path.unlink()  # first: without it the .jpg is no longer a shot
    shot.jpeg_path.unlink()


def shot_time(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def trim_spool(spool_dir: Path, max_bytes: int) -> None:
    """Drop the oldest shots past SPOOL_MAX_MB; the newest is always kept."""
    shots = spooled_shots(spool_dir)
    total = sum(shot.size for shot in shots)
    for shot in shots[:-1]:
        if total <= max_bytes:
            break
        total -= shot.size
        remove_spooled(shot)
        log.warning(
            "warning: spool over SPOOL_MAX_MB=%d: dropped the shot taken %s (%s)",
            max_bytes // 1_000_000,
            shot_time(shot.timestamp),
            shot.jpeg_path.name,
        )


def spool_summary(spool_dir: Path) -> str:
    shots = spooled_shots(spool_dir)
    return f"{len(shots)} shot{'s' if len(shots) != 1 else ''}, " + size_text(
        sum(shot.size for shot in shots)
    )


def deliver_spool(client, config: Config) -> None:
    """Store the oldest spooled shots with what is left of their TTL, a bounded batch per run."""
    started = time.monotonic()
    for shot in spooled_shots(config.spool_dir)[:SPOOL_DELIVERY_MAX_SHOTS]:
        if time.monotonic() - started > SPOOL_DELIVERY_MAX_SECONDS:
            break
        ttl = shot.timestamp + config.image_expiry - int(time.time())
        if ttl <= 0:
            remove_spooled(shot)
            log.info(
                "discarded the spooled shot taken %s: past its expiry", shot_time(shot.timestamp)
            )
            continue
        try:
            fields = json.loads(shot.fields_path.read_text())
        except ValueError:
            shot.fields_path.rename(shot.fields_path.with_suffix(".json.unreadable"))
            log.warning(
                "warning: the fields of spooled shot %s are unreadable: set aside, JPEG kept",
                shot.jpeg_path.name,
            )
            continue
        fields["image_data"] = shot.jpeg_path.read_bytes()
        key = store(client, config, fields, ttl)
        remove_spooled(shot)
        log.info("delivered the spooled shot %s (expires in %d s)", key, ttl)


# --- Run guards: watchdog, camera lock, signals -------------------------------


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds like KeyboardInterrupt, closing the camera on the way."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Watchdog:
    """Ends a run still busy at its deadline, even when stuck in C code that no exception reaches.

    A timer thread reports the step that hung, spools a shot already taken, and
    exits the process. The kernel's SIGALRM two seconds later is the last resort
    when even that thread cannot run.
    """

    CAMERA_STEPS = (
        "opening the camera",
        "starting the camera",
        "waiting for exposure to settle",
        "autofocus",
        "capturing",
        "closing the camera",
    )

    def __init__(self):
        self.current_step = "starting"
        self.unsaved: dict[str, Any] | None = None
        self.config: Config | None = None
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def step(self, name: str) -> None:
        self.current_step = name

    def hold(self, fields: dict[str, Any], config: Config) -> None:
        """The shot to spool if the run is cut short."""
        with self.lock:
            self.unsaved, self.config = fields, config

    def release(self) -> None:
        """Redis has the shot."""
        with self.lock:
            self.unsaved = None

    def keep_unsaved(self) -> str:
        """Spool the shot held, once, whoever gets here first; say where it is."""
        with self.lock:
            if self.unsaved is None or self.config is None:
                return ""
            spool_dir = self.config.spool_dir
            # A stop signal now would cut the shot short on disk: it waits until the shot is safe.
            stop_signals = {signal.SIGTERM, signal.SIGINT}
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
            try:
                fields, self.unsaved = self.unsaved, None
                with spool_locked(spool_dir):
                    spool(spool_dir, fields)
                    trim_spool(spool_dir, self.config.spool_max_bytes)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return f"; kept in spool ({spool_summary(spool_dir)})"

    def start(self, seconds: float, reason: str = "", exit_code: int = 0) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(seconds, self.expire, args=(seconds, reason, exit_code))
        self.timer.daemon = True
        self.timer.start()
        signal.setitimer(signal.ITIMER_REAL, seconds + 2)

    def expire(self, seconds: float, reason: str, exit_code: int) -> None:
        step = self.current_step
        if not exit_code:
            exit_code = EXIT_CAMERA if step in self.CAMERA_STEPS else EXIT_REDIS
        message = reason or f"run timed out after {seconds:g} s while {step}"
        try:
            message += self.keep_unsaved()
        except SpoolError as error:
            message += f"; the shot is lost: {error}"
        log.error("error: %s", message)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)


watchdog = Watchdog()


def stop_on_signal(signal_number: int, frame) -> None:
    exit_code = 128 + signal_number
    name = signal.Signals(signal_number).name
    # If the main thread is stuck where this exception cannot reach, end the run anyway.
    watchdog.start(2, f"stopped by {name}", exit_code)
    raise Interrupted(f"stopped by {name}", exit_code)


class CameraLock:
    """One run per camera: an flock the kernel releases if its holder dies."""

    def __init__(self, config: Config):
        self.path = config.lock_dir / f"snap-camera{config.camera_num}.lock"
        self.timeout = config.lock_timeout
        self.camera_num = config.camera_num
        self.fd = -1

    def open(self) -> int:
        # Shared by every user who may take a shot, so created writable by all; an
        # existing file is opened without O_CREAT, which sticky /run/lock would refuse.
        try:
            return os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            os.fchmod(fd, 0o666)
            return fd
        except PermissionError:
            return os.open(self.path, os.O_RDONLY)

    def __enter__(self) -> CameraLock:
        try:
            self.fd = self.open()
        except OSError as error:
            raise LockError(f"cannot open lock file {self.path}: {error.strerror}") from error
        watchdog.step("waiting for another run to finish")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockError(
                        f"camera {self.camera_num} is still in use by another snap run "
                        f"(pid {self.holder()}) after LOCK_TIMEOUT={self.timeout:g} s"
                    ) from None
                time.sleep(0.1)
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # opened read-only: locked all the same, only the pid goes unrecorded
        return self

    def holder(self) -> str:
        return os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"

    def __exit__(self, *exc_info) -> None:
        os.close(self.fd)  # releases the flock


# --- Timers ------------------------------------------------------------------

UNIT_DIR = Path("etc/systemd/system")
DEFAULT_EVERY = "1min"
UNIT_NAMES = ("snap.service", "snap.timer", "snap@.service", "snap@.timer")
# ProtectHome= hides these from the service.
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))
# Time span units as systemd.time(7) spells them, in seconds; a bare number is seconds.
SPAN_UNITS = {
    "": 1,
    **dict.fromkeys(("us", "usec", "\u00b5s", "\u03bcs"), 1e-6),
    **dict.fromkeys(("ms", "msec"), 1e-3),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
    **dict.fromkeys(("M", "month", "months"), 2629800),
    **dict.fromkeys(("y", "year", "years"), 31557600),
}
SPAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([^\d\s.]*)\s*")

SERVICE_UNIT = """\
[Unit]
Description={description}
Documentation=file://{app_dir}/README.md
# Redis may be on another host, and a clock not yet set would misdate the shot
# (see the README on a Raspberry Pi without a real-time clock).
After=network-online.target time-sync.target
Wants=network-online.target

[Service]
Type=oneshot
User={user}
# The group of the camera's device nodes.
SupplementaryGroups=video
{exec_start}
{environment_files}
# The spool of shots Redis did not take: /var/lib/{state}, given to snap as $STATE_DIRECTORY.
StateDirectory={state}
# The per-camera lock, shared with the test shots taken by hand.
ReadWritePaths=-/run/lock
# snap.py ends a run after RUN_TIMEOUT (60 s); this is the backstop should it not. A oneshot
# has no start timeout by default, and one hung run would stop the timer for good.
TimeoutStartSec=90
# SIGKILL this long after the SIGTERM that ends a run past its timeout.
TimeoutStopSec=15

# Sandbox: about 1.5 in `systemd-analyze security` (0 is the safest, 10 the least safe).
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
# /home, /root and /run/user are hidden; what snap needs there is mounted back, read-only.
{protect_home}
PrivateTmp=yes
PrivateMounts=yes
# Only the camera's device nodes, which PrivateDevices=yes would hide: /dev/video* and
# /dev/v4l-subdev* (video4linux), /dev/media* (media), /dev/dma_heap/* (frame buffers).
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-media rw
DeviceAllow=char-dma_heap rw
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
# Redis over TCP, on any host (so no IPAddressAllow=), or over a unix socket; libcamera
# learns of cameras from udev over netlink.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
UMask=0077
# No RemoveIPC=: it would delete all of the user's IPC objects, their desktop session's too.
"""

TIMER_UNIT = """\
[Unit]
Description={description}
Documentation=file://{app_dir}/README.md

[Timer]
# A minute after boot (at once when the timer starts later), then every {every} from the
# start of the previous run; a run still going when the next is due is not started twice.
OnBootSec=1min
OnUnitActiveSec={every}
# The default accuracy, one minute, would make a short interval meaningless.
AccuracySec=1s

[Install]
WantedBy=timers.target
"""


class PermissionRefused(SnapError):
    exit_code = EXIT_NOPERM


class UnitWriteError(SnapError):
    exit_code = EXIT_CANTCREAT


def span_seconds(span: str) -> float | None:
    """A systemd time span such as 30s or 1min 30s, in seconds; None if it is not one."""
    seconds = 0.0
    position = 0
    while position < len(span):
        part = SPAN_PART.match(span, position)
        if part is None or part.group(2) not in SPAN_UNITS:
            return None
        seconds += float(part.group(1)) * SPAN_UNITS[part.group(2)]
        position = part.end()
    return seconds if position else None


def check_interval(every: str) -> str:
    seconds = span_seconds(every)
    if seconds is None:
        raise UsageError(
            f"--every {every!r} is not a time span: expected e.g. 30s, 5min, 1h or 1min 30s"
        )
    if seconds < 1:
        raise UsageError(f"--every {every!r} is too short: the shortest interval is 1s")
    return every.strip()


def install_root(args: argparse.Namespace) -> Path:
    return args.root or Path("/")


def service_user(args: argparse.Namespace) -> str:
    """--user, else whoever ran sudo; never root, and known here when installing here."""
    import pwd

    user = args.user or os.environ.get("SUDO_USER", "")
    if not user or user == "root":
        raise UsageError("name the user who takes the photos (not root): --user NAME")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", user):
        raise UsageError(f"--user {user!r} is not a user name")
    if install_root(args) == Path("/"):  # below another root the user may exist only there
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise UsageError(f"--user {user!r}: no such user") from None
    return user


def unit_path(path: Path) -> str:
    """The path as a unit file can hold it: absolute, with no space, quote, % or $."""
    if not path.is_absolute() or not re.fullmatch(r"[\w./+@,-]+", str(path)):
        raise UsageError(
            f"{path} cannot be written in a unit file: move the checkout to a path "
            "of letters, digits and ._-/ only"
        )
    return str(path)


def interpreter_dirs(python: Path) -> list[Path]:
    """The venv the interpreter belongs to, and the installation it links to."""
    return [python.parent.parent, python.resolve().parent.parent]


def protect_home(needed: list[Path]) -> str:
    """ProtectHome= and the directories snap needs from under it, mounted back read-only."""
    under_home = {path for path in needed if any(path.is_relative_to(home) for home in HOME_DIRS)}
    outermost = sorted(
        path
        for path in under_home
        if not any(path != other and path.is_relative_to(other) for other in under_home)
    )
    if not outermost:
        return "ProtectHome=yes"
    return "ProtectHome=tmpfs\nBindReadOnlyPaths=" + " ".join(unit_path(p) for p in outermost)


def render_units(app_dir: Path, python: Path, user: str, every: str) -> dict[str, str]:
    """The text of each unit file, by name, for snap.py in app_dir run by python."""
    app = unit_path(app_dir)
    command = f"{unit_path(python)} {app}/snap.py"
    shared = {
        "app_dir": app,
        "user": user,
        "every": every,
        "protect_home": protect_home([app_dir, *interpreter_dirs(python)]),
    }
    return {
        "snap.service": SERVICE_UNIT.format(
            **shared,
            description="Take one photo and store it in Redis",
            exec_start=f"ExecStart={command}",
            environment_files=f"EnvironmentFile=-{app}/.env",
            state="snap",
        ),
        "snap.timer": TIMER_UNIT.format(**shared, description=f"Take a photo every {every}"),
        "snap@.service": SERVICE_UNIT.format(
            **shared,
            description="Take one photo with camera %i and store it in Redis",
            exec_start=(
                "# The instance is the camera number; it wins over CAMERA_NUM in the env files.\n"
                f"ExecStart=/usr/bin/env CAMERA_NUM=%i {command}"
            ),
            environment_files=(
                f"EnvironmentFile=-{app}/.env\n"
                "# This camera's own settings, e.g. IMAGE_KEY_PREFIX, over the shared ones.\n"
                f"EnvironmentFile=-{app}/.env.camera%i"
            ),
            state="snap@%i",
        ),
        "snap@.timer": TIMER_UNIT.format(
            **shared, description=f"Take a photo with camera %i every {every}"
        ),
    }


def unit_file_error(error: OSError, doing: str) -> SnapError:
    """The one line for a unit file that could not be written or removed."""
    if isinstance(error, PermissionError):
        return PermissionRefused(
            f"cannot {doing} {error.filename}: permission denied; run it as root (sudo)"
        )
    return UnitWriteError(f"cannot {doing} {error.filename}: {error.strerror}")


def systemctl(*arguments: str) -> None:
    """Tell the running systemd; a failure is reported, not fatal: the files are in place."""
    import subprocess

    try:
        subprocess.run(
            ["systemctl", "--no-ask-password", *arguments],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        reason = getattr(error, "stderr", "") or str(error)
        log.warning("warning: systemctl %s failed: %s", " ".join(arguments), reason.strip())


def install_timer(args: argparse.Namespace) -> int:
    every = check_interval(DEFAULT_EVERY if args.every is None else args.every)
    user = service_user(args)
    units = render_units(Path(__file__).resolve().parent, Path(sys.executable), user, every)
    unit_dir = install_root(args) / UNIT_DIR
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (unit_dir / name).write_text(text)
    except OSError as error:
        raise unit_file_error(error, "write") from error
    if install_root(args) == Path("/"):
        systemctl("daemon-reload")
    if not args.quiet:
        print(f"installed {', '.join(units)} in {unit_dir} (every {every}, as {user})")
        print("next: sudo systemctl enable --now snap.timer (or snap@0.timer snap@1.timer)")
        print("      after reinstalling: sudo systemctl restart snap.timer")
    return EXIT_OK


def installed_files(unit_dir: Path) -> list[Path]:
    """snap's unit files in unit_dir, and the links that enable its timers."""
    wants = unit_dir / "timers.target.wants"
    return [unit_dir / name for name in listing(unit_dir) if name in UNIT_NAMES] + [
        wants / name for name in listing(wants) if re.fullmatch(r"snap(@[^/]+)?\.timer", name)
    ]


def listing(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def uninstall_timer(args: argparse.Namespace) -> int:
    unit_dir = install_root(args) / UNIT_DIR
    try:
        files = installed_files(unit_dir)
        for path in files:
            path.unlink()
    except OSError as error:
        raise unit_file_error(error, "remove") from error
    if install_root(args) == Path("/") and files:
        enabled = [path.name for path in files if path.parent.name == "timers.target.wants"]
        if enabled:  # still loaded until the reload; a shot already running is left to finish
            systemctl("stop", *enabled)
        systemctl("daemon-reload")
    if not args.quiet:
        removed = ", ".join(str(path.relative_to(unit_dir)) for path in files)
        print(f"removed {removed} from {unit_dir}" if files else f"no snap units in {unit_dir}")
    return EXIT_OK


# --- Command line ------------------------------------------------------------


def reject_timer_options(args: argparse.Namespace) -> None:
    for flag, value in (("--every", args.every), ("--user", args.user), ("--root", args.root)):
        if value is not None:
            raise UsageError(f"{flag} goes with --install-timer or --uninstall-timer")


def shown_default(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f" [{str(value).lower()}]"
    if isinstance(value, float):
        return f" [{value:g}]"
    return f" [{value}]"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"snap: error: {message} (see --help)\n")


def build_parser() -> Parser:
    variables = "\n".join(
        f"  {s.name:<18} {s.meaning}{shown_default(s.default)}" for s in SETTINGS.values()
    )
    codes = "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES)
    parser = Parser(
        prog="snap.py",
        description="Take one photo with the Raspberry Pi camera and store it in Redis.",
        epilog=(
            "environment variables (also read from the .env file next to snap.py):\n"
            f"{variables}\n\nexit codes:\n{codes}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read variables from PATH")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the JPEG to FILE")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="take the shot but not store it")
    mode.add_argument(
        "--check",
        action="store_true",
        help="check configuration, Redis and cameras; change nothing",
    )
    mode.add_argument(
        "--install-timer",
        action="store_true",
        help="install snap.service and snap.timer for this checkout (as root)",
    )
    mode.add_argument(
        "--uninstall-timer", action="store_true", help="disable and remove the timer (as root)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    timer = parser.add_argument_group("timer installation")
    timer.add_argument("--every", metavar="SPAN", help="interval, a systemd time span [1min]")
    timer.add_argument("--user", metavar="NAME", help="user the job runs as [who ran sudo]")
    timer.add_argument("--root", type=Path, metavar="DIR", help="install below DIR [/]")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", action="store_true", help="show camera logs, tracebacks"
    )
    loudness.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.add_argument("--version", action="version", version=f"snap {__version__}")
    return parser


class MaskingFilter(logging.Filter):
    """Keeps the Redis password out of every line, whatever produced it."""

    def __init__(self, secret: str | None):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            record.msg = record.getMessage().replace(self.secret, "****")
            record.args = None
        return True


def setup_logging(args: argparse.Namespace) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("snap: %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO)
    return handler


def size_text(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.0f} kB"


def check_output_path(path: Path | None) -> None:
    if path is not None and not path.resolve().parent.is_dir():
        raise UsageError(f"--output: directory {path.resolve().parent} does not exist")


def write_output(path: Path, jpeg: bytes) -> None:
    try:
        path.write_bytes(jpeg)
    except OSError as error:
        raise OutputError(f"--output: cannot write {path}: {error.strerror}") from error


def report(args, result: dict) -> None:
    if args.json:
        print(json.dumps(result, default=str))
        return
    if args.quiet:
        return
    lux = "no lux" if result["lux"] is None else f"lux {result['lux']}"
    size = size_text(result["bytes"])
    if result["key"] is None:
        print(f"captured {size} ({lux}) in {result['seconds']:.1f} s; not stored (dry run)")
    else:
        print(
            f"stored {result['key']} ({size}, {lux}, expires in {result['ttl']} s) "
            f"in {result['seconds']:.1f} s"
        )


def run_check(config: Config, verbose: bool) -> int:
    """One line per check; the first failure's exit code."""
    failures = []
    print(f"config: ok (REDIS_URL {mask_url(config.redis_url)}, prefix {config.key_prefix})")
    try:
        version = server_version(redis_client(config), config)
        print(f"redis: ok ({mask_url(config.redis_url)}, {version})")
    except SnapError as error:
        print(f"redis: FAILED: {error}")
        failures.append(error.exit_code)
    try:
        cameras = detected_cameras(import_picamera2(verbose))
        for number, camera in enumerate(cameras):  # older picamera2 reports no "Num"
            print(f"camera {number}: {camera.get('Model')} ({camera.get('Id')})")
        if config.camera_num >= len(cameras):
            raise CameraError(f"camera {config.camera_num} not detected; {NO_CAMERA_HINT}")
        print(f"camera: ok (CAMERA_NUM {config.camera_num})")
    except SnapError as error:
        print(f"camera: FAILED: {error}")
        failures.append(error.exit_code)
    try:
        print(f"spool: ok ({config.spool_dir}, {spool_state(config.spool_dir)})")
    except SnapError as error:
        print(f"spool: FAILED: {error}")
        failures.append(error.exit_code)
    return failures[0] if failures else EXIT_OK


def store_or_spool(config: Config, fields: dict[str, Any]):
    """Store the shot and return (client, key); if Redis does not take it, spool it and say so."""
    watchdog.hold(fields, config)
    watchdog.step("storing in Redis")
    try:
        client = redis_client(config)
        key = store(client, config, fields, config.image_expiry)
    except SnapError as error:
        try:
            kept = watchdog.keep_unsaved()
        except SpoolError as spool_error:
            raise SpoolError(f"not stored: {error}; the shot is lost: {spool_error}") from error
        raise type(error)(f"not stored: {error}{kept}") from error
    except Interrupted as stop:
        raise Interrupted(f"{stop}{watchdog.keep_unsaved()}", stop.exit_code) from stop
    watchdog.release()
    return client, key


def deliver_backlog(client, config: Config) -> None:
    watchdog.step("delivering the spool")
    try:
        with spool_locked(config.spool_dir, wait=False) as holding:
            if holding:  # else another run is delivering it
                deliver_spool(client, config)
    except SnapError as error:
        log.warning(
            "warning: spool delivery stopped: %s; %s left", error, spool_summary(config.spool_dir)
        )


def run_shot(config: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    if not args.dry_run:
        prepare_spool(config.spool_dir)
    with CameraLock(config):
        shot = take_shot(config, args.verbose)
    fields = shot_fields(shot, config)
    output_error = None
    if args.output is not None:
        try:
            write_output(args.output, shot.jpeg)
        except OutputError as error:
            output_error = error
            log.error("error: %s", error)
    client, key = (None, None) if args.dry_run else store_or_spool(config, fields)
    report(
        args,
        {
            "key": key,
            "timestamp": shot.timestamp,
            "bytes": len(shot.jpeg),
            "lux": fields.get("lux"),
            "ttl": None if key is None else config.image_expiry,
            "seconds": round(time.monotonic() - started, 3),
            "metadata": shot.metadata,
        },
    )
    if client is not None:
        deliver_backlog(client, config)
    return output_error.exit_code if output_error else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    handler = setup_logging(args)
    try:
        if args.install_timer:
            return install_timer(args)
        if args.uninstall_timer:
            return uninstall_timer(args)
        reject_timer_options(args)
        check_output_path(args.output)
        config = load_config(args.env_file)
        handler.addFilter(MaskingFilter(url_password(config.redis_url)))
        watchdog.start(config.run_timeout)
        signal.signal(signal.SIGTERM, stop_on_signal)
        signal.signal(signal.SIGINT, stop_on_signal)
        if args.check:
            return run_check(config, args.verbose)
        return run_shot(config, args)
    except SnapError as error:
        log.error("error: %s", error, exc_info=args.verbose)
        return error.exit_code
    except Interrupted as stop:
        log.error("error: %s", stop)
        return stop.exit_code
    except KeyboardInterrupt:
        log.error("error: interrupted")
        return 130
    except Exception as error:  # a bug: still one line, unless --verbose
        log.error("error: unexpected %s: %s", type(error).__name__, error, exc_info=args.verbose)
        return EXIT_SOFTWARE
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
