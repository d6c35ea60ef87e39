"""The command line: options, logging, what a run prints, and the exit code."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, camera, logs, status, store
from .config import SETTINGS, Config, load_config
from .errors import (
    EXIT_CODES,
    CameraError,
    Interrupted,
    SnapError,
    Unavailable,
    UsageError,
    describe,
)
from .guard import Guard
from .masking import MaskingFilter, mask_text, mask_url
from .run import run_shot
from .shot import NO_LUX
from .spool import Spool, size_text

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("snap")

# A run ended by a signal exits 128 plus its number, as shells and systemd expect.
SIGNAL_EXITS = "  129, 130, 143  stopped by SIGHUP, SIGINT (Ctrl-C) or SIGTERM"


def reject_timer_options(args: argparse.Namespace) -> None:
    for flag, value in (("--every", args.every), ("--user", args.user), ("--root", args.root)):
        if value is not None:
            raise UsageError(f"{flag} goes with --install-timer or --uninstall-timer")


def shown_default(value: Any) -> str:
    if value in (None, "", ()):
        return ""
    if isinstance(value, bool):
        return f" [{str(value).lower()}]"
    if isinstance(value, float):
        return f" [{value:g}]"
    return f" [{value}]"


def stale_seconds(text: str) -> float:
    """--stale's value: seconds, more than 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        import argparse

        raise argparse.ArgumentTypeError(f"expected a number of seconds greater than 0: {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    import argparse  # only here: a command line of PLAIN_FLAGS needs no parser

    from . import watch

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            line = logs.format_line(logging.ERROR, f"{message} (see --help)")
            self.exit(os.EX_USAGE, line + "\n")

    variables = "\n".join(
        f"  {s.name:<18} {s.meaning}{shown_default(s.default)}" for s in SETTINGS.values()
    )
    codes = "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES)
    parser = Parser(
        prog="snap.py",
        description="Take one photo with the Raspberry Pi camera and store it in Redis.",
        epilog=(
            "environment variables (also read from the .env file next to snap.py):\n"
            f"{variables}\n\nexit codes:\n{codes}\n{SIGNAL_EXITS}"
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
        "--status",
        action="store_true",
        help="list every camera's status; exit 1 if one stored no shot within --stale seconds",
    )
    mode.add_argument(
        "--redis-cli",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="run redis-cli ARGS on the Redis snap uses (REDIS_URL from .env); the rest of "
        "the line goes to redis-cli",
    )
    mode.add_argument(
        "--install-timer",
        action="store_true",
        help="install snap's systemd units, the files in timers/, for this checkout (as root)",
    )
    mode.add_argument(
        "--uninstall-timer",
        action="store_true",
        help="stop the timers and remove the units (as root)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--stale",
        type=stale_seconds,
        metavar="SECONDS",
        help=f"with --status: how recent a camera's last shot must be [{watch.DEFAULT_STALE:g}]",
    )
    timer = parser.add_argument_group("timer installation")
    timer.add_argument("--every", metavar="SPAN", help="interval, a systemd time span [1min]")
    timer.add_argument("--user", metavar="NAME", help="user the job runs as [who ran sudo]")
    timer.add_argument("--root", type=Path, metavar="DIR", help="install below DIR [/]")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show each step's time, the exposure, libcamera's log and error tracebacks",
    )
    loudness.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.add_argument("--version", action="version", version=f"snap {__version__}")
    return parser


# Flags a timer's or cron's run may carry, read without argparse: importing it and building
# the parser, help text and all, would cost every shot about 5 ms and 0.4 MB.
PLAIN_FLAGS = {
    "-q": "quiet",
    "--quiet": "quiet",
    "-v": "verbose",
    "--verbose": "verbose",
    "--json": "json",
    "--dry-run": "dry_run",
}
# An empty command line as build_parser() parses it.
NO_OPTIONS = {
    "env_file": None,
    "redis_cli": None,
    "output": None,
    "dry_run": False,
    "check": False,
    "status": False,
    "install_timer": False,
    "uninstall_timer": False,
    "json": False,
    "stale": None,
    "every": None,
    "user": None,
    "root": None,
    "verbose": False,
    "quiet": False,
}


def plain_options(argv: list[str]) -> types.SimpleNamespace | None:
    """The options of a command line of PLAIN_FLAGS alone, each once and not both -q and -v,
    as build_parser() would parse it; None for any other, which argparse parses."""
    names = [PLAIN_FLAGS.get(arg) for arg in argv]
    if None in names or len(set(names)) < len(names) or {"quiet", "verbose"} <= set(names):
        return None
    return types.SimpleNamespace(**{**NO_OPTIONS, **dict.fromkeys(names, True)})


def setup_logging(args: argparse.Namespace) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.LineFormatter(logs.destination(sys.stderr)))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO)
    return handler


def check_output_path(path: Path | None) -> None:
    if path is not None and not path.resolve().parent.is_dir():
        raise UsageError(f"--output: directory {path.resolve().parent} does not exist")


def emit(line: str) -> None:
    """One line on standard output. Closed, full or a broken pipe, it costs a warning, never
    the run: the exit code and the backlog's delivery do not depend on who reads it."""
    if sys.stdout is None:  # started with standard output closed
        return
    try:
        print(line, flush=True)
    except (OSError, ValueError) as error:
        silence(sys.stdout)
        log.warning(
            "cannot write to standard output: %s", getattr(error, "strerror", None) or error
        )


def silence(stream) -> None:
    """Point a standard stream that cannot be written at /dev/null, so that what it still
    buffers, flushed when Python exits, cannot turn the exit code into 120."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                silence(stream)


def finite(value: Any) -> Any:
    """The value for strict JSON: NaN and the infinities become null, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def report(result: dict, as_json: bool, quiet: bool) -> None:
    if as_json:
        emit(json.dumps(finite(result), default=str, allow_nan=False))
        return
    if quiet:
        return
    if result.get("skipped"):
        emit(f"skipped: {result['skipped']}")
        return
    lux = "no lux" if result["lux"] in (None, NO_LUX) else f"lux {result['lux']}"
    size = size_text(result["bytes"])
    if result["key"] is None:
        emit(f"captured {size} ({lux}) in {result['seconds']:.1f} s; not stored (dry run)")
    else:
        emit(
            f"stored {result['key']} ({size}, {lux}, expires in {result['ttl']} s) "
            f"in {result['seconds']:.1f} s"
        )


def run_check(config: Config, spool: Spool, verbose: bool) -> int:
    """One line per check; the first failure's exit code."""
    failures = []

    def say(line: str) -> None:
        emit(mask_text(line, config.redis_url))

    say(f"config: ok (REDIS_URL {mask_url(config.redis_url)}, prefix {config.image_key_prefix})")
    try:
        version = store.server_version(store.redis_client(config), config)
        say(f"redis: ok ({mask_url(config.redis_url)}, {version})")
    except SnapError as error:
        say(f"redis: FAILED: {error.line()}")
        failures.append(error.exit_code)
    try:
        cameras = camera.detected_cameras(camera.import_picamera2(verbose))
        for number, info in enumerate(cameras):  # older picamera2 reports no "Num"
            say(f"camera {number}: {info.get('Model')} ({info.get('Id')})")
        if config.camera_num >= len(cameras):
            raise CameraError(f"camera {config.camera_num} not detected; {camera.NO_CAMERA_HINT}")
        say(f"camera: ok (CAMERA_NUM {config.camera_num})")
        if config.camera_controls or config.night_controls:  # only then is the camera opened
            try:
                day, night = camera.check_controls(config, verbose)
                if day:
                    say(f"controls: ok ({day})")
                if night:
                    say(f"night controls: ok ({night})")
            except SnapError as error:
                say(f"controls: FAILED: {error.line()}")
                failures.append(error.exit_code)
    except SnapError as error:
        say(f"camera: FAILED: {error.line()}")
        failures.append(error.exit_code)
    try:
        say(f"spool: ok ({config.spool_dir}, {spool.state()})")
    except SnapError as error:
        say(f"spool: FAILED: {error.line()}")
        failures.append(error.exit_code)
    return failures[0] if failures else os.EX_OK


def take_shot(config: Config, guard: Guard, args: argparse.Namespace) -> int:
    """The shot, with the run's status recorded, whatever ends it, unless it is a dry run."""

    def print_result(result: dict) -> None:
        report(result, args.json, args.quiet)

    def shot() -> int:
        return run_shot(config, guard, print_result, args.output, args.dry_run, args.verbose)

    if args.dry_run or not config.status_prefix:
        return shot()
    guard.on_expire = status.watchdog_report(config, guard)
    with status.recording(config, guard):
        return shot()


def run_redis_cli(config: Config, arguments: list[str]) -> int:
    """Replace this process with redis-cli ARGS, on the Redis snap uses."""
    command, password = store.redis_cli_command(config)
    environment = dict(os.environ)
    if password:
        environment["REDISCLI_AUTH"] = password
    flush_standard_streams()
    try:
        os.execvpe(command[0], [*command, *arguments], environment)
    except OSError as error:
        raise Unavailable(
            f"cannot run redis-cli: {error.strerror}; sudo apt install redis-tools"
        ) from None


def command(args: argparse.Namespace, handler: logging.Handler, guard: Guard) -> int:
    """What the command line asks for, run; its exit code."""
    if args.install_timer or args.uninstall_timer:
        from . import units  # only here: compileall and platform cost every shot a little

        if args.install_timer:
            return units.install_timer(args.every, args.user, args.root, args.quiet)
        return units.uninstall_timer(args.root, args.quiet)
    reject_timer_options(args)
    if args.stale is not None and not args.status:
        raise UsageError("--stale goes with --status")
    check_output_path(args.output)
    config = load_config(args.env_file)
    handler.addFilter(MaskingFilter(config.redis_url))
    if args.redis_cli is not None:
        return run_redis_cli(config, args.redis_cli)
    guard.spool = Spool(config.spool_dir, config.spool_max_bytes)
    guard.start(config.run_timeout)
    if args.check:
        return run_check(config, guard.spool, args.verbose)
    if args.status:
        from . import watch  # only here and for --help

        return watch.show(config, args.stale, args.json, emit)
    return take_shot(config, guard, args)


def failure(error: BaseException, verbose: bool) -> tuple[int, str, bool]:
    """The exit code of a run that ended in `error`, its last line, and whether --verbose
    adds the traceback."""
    if isinstance(error, SnapError):
        return error.exit_code, error.line(), verbose
    if isinstance(error, Interrupted):
        return error.exit_code, str(error), False
    if isinstance(error, KeyboardInterrupt):
        return 130, "interrupted", False
    if isinstance(error, Exception):  # a bug: still one line, unless --verbose
        return os.EX_SOFTWARE, describe(error), verbose
    raise error


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = plain_options(argv) or build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        flush_standard_streams()
        return exit_.code if isinstance(exit_.code, int) else os.EX_USAGE
    handler = setup_logging(args)
    guard = Guard()
    guard.catch_stop_signals()
    try:
        try:
            exit_code = command(args, handler, guard)
        finally:
            # From here on a stop signal changes the exit code, never the last line.
            guard.finishing = True
    except BaseException as error:
        exit_code, line, traceback = failure(error, args.verbose)
        log.error("%s", line, exc_info=traceback)
    log.removeHandler(handler)
    flush_standard_streams()
    return guard.exit_code(exit_code)
