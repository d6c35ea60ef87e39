"""Redis: the client, every key snap writes, and Redis's failures as one clean line each.

A shot is the hash PREFIX:<unix seconds> (image_data, timestamp, mime_type, lux, camera,
shot_id and the CAMERA_METADATA fields), written with its TTL in one MULTI/EXEC, never over
another, and never twice. A camera's status is the hash STATUS_PREFIX:<CAMERA_NAME>.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .errors import ConfigError, PermissionRefused, ShotRefused, SnapError, TemporaryFailure
from .guard import Step
from .masking import mask_text, mask_url
from .shot import SHOT_ID, new_shot_id

if TYPE_CHECKING:
    from .config import Config

# REDIS_URL's TLS files as redis-cli's options.
REDIS_CLI_TLS_FILES = {"ssl_ca_certs": "--cacert", "ssl_certfile": "--cert", "ssl_keyfile": "--key"}
# Writes the server dropped the connection on, the key still free: a shot over its size
# limits is dropped every time, so after these the shot is refused.
MAX_DROPPED_WRITES = 3

STORING = Step("storing in Redis")
DELIVERING = Step("delivering the spool")


def status_key(config: Config) -> str:
    return f"{config.status_prefix}:{config.camera_name}"


def acl_key_pattern(config: Config) -> str:
    """The ACL key pattern of this camera's status key, glob characters escaped; a character
    Redis refuses in a rule (a space, any whitespace) or that would not survive being pasted
    into redis-cli (a quote, a control character) is matched by one ? per byte."""

    def pattern_of(character: str) -> str:
        if character in "*?[]\\":
            return "\\" + character
        if character.isspace() or not character.isprintable() or character in "\"'":
            return "?" * len(character.encode("utf-8", "surrogateescape"))
        return character

    return "~" + "".join(pattern_of(character) for character in status_key(config))


def check_url_options(url: str) -> None:
    """REDIS_URL as redis-py reads it, all its options included; nothing connects."""
    import redis

    try:
        redis.ConnectionPool.from_url(url).make_connection()
    except Exception as error:  # redis-py raises ValueError, TypeError, RedisError ...
        reason = mask_text(str(error), url)
        raise ConfigError(f"REDIS_URL={mask_url(url)!r} is invalid: {reason}") from None


def redis_client(config: Config):
    """A client for REDIS_URL that fails fast: no retries, bounded waits."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    check_url_options(config.redis_url)

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


class Connecting:
    """The run's Redis client, made and connected in a thread of its own, started as the
    camera starts: importing redis-py and connecting cost a tenth of a second that the
    camera then spends waiting on hardware, with the GIL free (started sooner, the import
    would only compete with picamera2's and the camera's configuration for the GIL). A
    failure there is raised by client(), where the shot is stored, so the shot is spooled
    as before."""

    def __init__(self, config: Config):
        self.config = config
        self.made: Any = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.connect, name="redis", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def connect(self) -> None:
        try:
            client = redis_client(self.config)
            if not self.config.redis_cluster:  # a cluster client has connected already
                pool = client.connection_pool
                try:
                    pool.release(pool.get_connection())
                except redis_errors() as error:
                    raise redis_failure(error, self.config) from error
            self.made = client
        except BaseException as error:  # raised again in the thread that stores the shot
            self.failure = error

    def client(self):
        """The client, once connected (connecting takes at most REDIS_TIMEOUT, twice over
        for TLS); what went wrong, raised."""
        self.thread.join(2 * self.config.redis_timeout + 1)
        if self.thread.is_alive():
            raise TemporaryFailure(
                f"Redis unreachable at {mask_url(self.config.redis_url)} "
                f"(timeout after {self.config.redis_timeout:g} s)",
                f"check that Redis runs: {ping_command(self.config.redis_url)}",
            )
        if self.failure is not None:
            raise self.failure
        return self.made


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
        return PermissionRefused(
            f"Redis refused access at {where}: {server_reason(error)}; "
            f"{permission_hint(server_reason(error), config)}"
        )
    if isinstance(error, redis.AuthenticationError):
        return PermissionRefused(f"Redis refused access at {where}: {server_reason(error)}")
    if isinstance(error, redis.TimeoutError):
        return TemporaryFailure(
            f"Redis unreachable at {where} (timeout after {config.redis_timeout:g} s)",
            f"check that Redis runs: {ping_command(config.redis_url)}",
        )
    if isinstance(error, redis.ConnectionError):
        return TemporaryFailure(
            f"Redis unreachable at {where} ({server_reason(error)})",
            f"check that Redis runs: {ping_command(config.redis_url)}",
        )
    if isinstance(error, redis.exceptions.OutOfMemoryError) or "OOM" in server_reason(error):
        return ShotRefused("Redis refused the write: out of memory (maxmemory reached)")
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return TemporaryFailure(f"Redis refused the write: {where} is a read-only replica")
    if type(error) in (redis.ResponseError, redis.exceptions.ExecAbortError, redis.DataError):
        return ShotRefused(f"Redis refused the write: {server_reason(error)}")
    return TemporaryFailure(f"Redis refused the write: {server_reason(error)}")


def ping_command(url: str) -> str:
    """The redis-cli command that asks the Redis at url for a PONG; no password in it."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"redis-cli -s {parts.path} ping"
    query = dict(parse_qsl(parts.query))
    tls_files = "".join(
        f" {option} {query[name]}"
        for name, option in REDIS_CLI_TLS_FILES.items()
        if query.get(name)
    )
    return f"redis-cli -u {mask_url(urlunsplit(parts._replace(query='')))}{tls_files} ping"


def redis_cli_command(config: Config) -> tuple[list[str], str | None]:
    """redis-cli's options for the Redis at REDIS_URL, and its password, which goes to
    redis-cli in REDISCLI_AUTH rather than on the command line, where ps would show it."""
    from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

    parts = urlsplit(config.redis_url)
    query = dict(parse_qsl(parts.query))
    userinfo, _, address = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    password = unquote(password) if password else query.get("password")
    if parts.scheme == "unix":
        command = ["redis-cli", "-s", parts.path]
        command += ["-n", query["db"]] if query.get("db") else []
    else:  # redis-cli would take a user alone in the URL for the password
        command = ["redis-cli", "-u", urlunsplit(parts._replace(netloc=address, query=""))]
        for name, option in REDIS_CLI_TLS_FILES.items():
            command += [option, query[name]] if query.get(name) else []
    user = unquote(user) or query.get("username", "")
    command += ["--user", user] if user else []
    if config.redis_cluster:
        command.append("-c")
    return command, password


def permission_hint(reason: str, config: Config) -> str:
    """What an ACL user lacks, as the ACL SETUSER rule that grants it."""
    user = urlsplit(config.redis_url).username or "default"
    command = re.search(r"run the '([\w|]+)' command", reason)
    if command:
        return f"grant it with: ACL SETUSER {user} +{command.group(1).lower()}"
    keys = f"~{config.image_key_prefix}:*"
    if config.status_prefix:
        keys += f" {acl_key_pattern(config)}"
    return f"grant the keys with: ACL SETUSER {user} {keys}"


def server_reason(error: Exception) -> str:
    """The server's own words, without redis-py's echo of the pipelined command."""
    text = str(error.args[0]) if error.args else ""
    first_line = text.rpartition("caused error: ")[2].split("\n")[0]
    printable = "".join(ch if ch.isprintable() else "?" for ch in first_line)
    return printable[:200] or type(error).__name__


def candidate_keys(key_prefix: str, timestamp: int):
    """PREFIX:T, then PREFIX:T.1, PREFIX:T.2, ... for shots taken in the same second: the id
    stays a decimal number of seconds, as the front end dates a shot from it."""
    yield f"{key_prefix}:{timestamp}"
    for number in range(1, 1000):
        yield f"{key_prefix}:{timestamp}.{number}"


def connection_cause(error: Exception) -> Exception | None:
    """The connection error behind `error`, if any: redis-py reports a connection lost while
    WATCHing as a WatchError, the same exception as another client writing the key."""
    import redis

    connection_errors = (redis.ConnectionError, redis.TimeoutError)
    for candidate in (error, error.__cause__, error.__context__):
        if isinstance(candidate, connection_errors):
            return candidate
    return None


def size_limits(client) -> str:
    """The server's limits on a request's size, when this user may read them."""
    try:
        limits = {
            name: int(client.config_get(name).get(name, 0))
            for name in ("proto-max-bulk-len", "client-query-buffer-limit")
        }
    except (*redis_errors(), ValueError):
        return ""
    known = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in limits.items() if size)
    return f" (here: {known})" if known else ""


def dropped_failure(client, fields: dict[str, Any], causes: list[Exception]) -> ShotRefused:
    size = len(fields["image_data"]) / 1e6
    return ShotRefused(
        f"Redis dropped the connection on each of {len(causes)} tries to write this "
        f"{size:.1f} MB shot ({server_reason(causes[-1])}): a shot over the server's "
        f"proto-max-bulk-len or client-query-buffer-limit is refused this way{size_limits(client)}"
    )


def own_shot(pipe, key: str, shot_id: str) -> bool:
    """Whether the hash under `key` is this shot; taken as not when the key is no hash, or
    when the ACL grants no HGET (it is optional: docs/deployments.md)."""
    import redis

    try:
        return pipe.hget(key, SHOT_ID) == shot_id.encode()
    except redis.ResponseError:
        return False


def store(
    client, config: Config, fields: dict[str, Any], ttl: int, key_prefix: str | None = None
) -> str:
    """Write the shot into a new hash under key_prefix (default IMAGE_KEY_PREFIX), never into
    an existing one, never twice; return its key.

    WATCH makes the check and the write atomic on the server: if another client creates the
    key in between, EXEC fails and the key is looked at again. HSET and EXPIRE go in one
    MULTI/EXEC, so no shot is ever left without its TTL. A failed EXEC is not taken to mean
    another client won the key: the connection may have dropped after EXEC ran, so the next
    look at the key tells, by its shot_id, whether this very shot is there (then it is not
    written again, and the same holds for a spooled shot Redis already had).
    """
    import redis

    shot_id = str(fields.setdefault(SHOT_ID, new_shot_id()))
    keys = candidate_keys(key_prefix or config.image_key_prefix, fields["timestamp"])
    key = next(keys)
    dropped: list[Exception] = []
    try:
        with client.pipeline(transaction=True) as pipe:
            while True:
                pipe.watch(key)
                if pipe.exists(key):
                    if own_shot(pipe, key, shot_id):
                        pipe.reset()
                        return key
                    # reset(), not unwatch(): a cluster pipeline stays bound to the
                    # watched key's slot until reset, and the next key has another.
                    pipe.reset()
                    key = next(keys, "")
                    if not key:
                        break
                    continue
                pipe.multi()
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl)
                try:
                    pipe.execute()
                    return key
                except (redis.WatchError, redis.ConnectionError, redis.TimeoutError) as error:
                    pipe.reset()
                    cause = connection_cause(error)
                    if cause is not None:
                        dropped.append(cause)
                        if len(dropped) == MAX_DROPPED_WRITES:
                            raise dropped_failure(client, fields, dropped) from error
    except redis_errors() as error:
        cause = connection_cause(error) or error
        raise redis_failure(cause, config) from error
    raise TemporaryFailure(f"Redis refused the write: every key for {fields['timestamp']} is taken")


def server_version(client, config: Config) -> str:

    try:
        client.ping()
        server = client.info("server")
    except redis_errors() as error:
        raise redis_failure(error, config) from error
    if "valkey_version" in server:
        return f"Valkey {server['valkey_version']}"
    return f"Redis {server.get('redis_version', 'unknown')}"
