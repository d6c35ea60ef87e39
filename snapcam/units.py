"""systemd units: --install-timer renders the files in timers/ for this checkout.

The files in timers/ are the units for the checkout the README installs (/home/pi/snap,
run by its .venv's python as user pi, every minute); rendering replaces exactly those
values, so no unit text is written twice. The package is byte-compiled too: the
sandboxed service cannot write __pycache__, and would compile every module on every run.
Nothing is written for a service that could not run: a python that cannot import snap's
packages, the user nobody, or a checkout the service's private /tmp hides.
"""

from __future__ import annotations

import compileall
import logging
import os
import platform
import re
import shlex
import sys
from pathlib import Path

from .errors import ConfigError, PermissionRefused, SnapError, UsageError, WriteError

log = logging.getLogger("snap")

PACKAGE_DIR = Path(__file__).absolute().parent
CHECKOUT = PACKAGE_DIR.parent
TIMERS = CHECKOUT / "timers"
UNIT_DIR = Path("etc/systemd/system")
DEFAULT_EVERY = "1min"
# The services' drop-ins: what both share, once (in timers/, snap@.service.d links to them).
DROP_INS = ("service.conf", "sandbox.conf")
UNIT_FILES = (
    "snap.service",
    "snap.timer",
    "snap@.service",
    "snap@.timer",
    *(f"{service}.d/{name}" for service in ("snap.service", "snap@.service") for name in DROP_INS),
)
# What the files in timers/ are written for.
TEMPLATE_CHECKOUT = "/home/pi/snap"
TEMPLATE_PYTHON = f"{TEMPLATE_CHECKOUT}/.venv/bin/python"
TEMPLATE_USER = "pi"
TEMPLATE_EVERY = "1min"
# ProtectHome= hides these from the service, and PrivateTmp= these.
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))
TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))
# What the service's python must import; on a Pi (these machines) picamera2 too.
REQUIRED_MODULES = ("redis", "environs")
PI_MACHINES = ("aarch64", "armv7l", "armv6l")
# systemd warns that a service run as nobody (the overflow user, 65534) is unsafe.
NOBODY_UID = 65534
VENV_HINT = (
    "make the checkout's .venv as the README does: python3 -m venv --system-site-packages "
    ".venv && .venv/bin/pip install -r requirements.txt"
)
IMPORT_CHECK = """
import importlib, sys
missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        missing.append(name)
print(" ".join(missing))
"""

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
# ASCII digits, spaces and tabs only: a newline would end the unit file's line.
SPAN_PART = re.compile(r"[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*([^0-9\s.]*)[ \t]*")
# systemd counts a span in microseconds, in 64 bits.
SPAN_MAX_SECONDS = (2**64 - 2) / 1e6


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


def systemd_span_seconds(span: str) -> float | None:
    """The span as systemd itself reads it, where systemd-analyze is installed; None where it
    is not. UsageError with systemd's reason if systemd refuses it."""
    import subprocess

    try:
        result = subprocess.run(
            ["systemd-analyze", "timespan", "--", span],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    microseconds = re.search(r"s: ([0-9]+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or microseconds is None:
        reason = (result.stderr.strip().splitlines() or ["refused"])[-1]
        raise UsageError(f"--every {span!r} is not a time span systemd takes: {reason}")
    return int(microseconds.group(1)) / 1e6


def check_interval(every: str) -> str:
    seconds = span_seconds(every)
    if seconds is None or seconds > SPAN_MAX_SECONDS:
        raise UsageError(
            f"--every {every!r} is not a time span: expected e.g. 30s, 5min, 1h or 1min 30s"
        )
    systemd_seconds = systemd_span_seconds(every)
    if (seconds if systemd_seconds is None else systemd_seconds) < 1:
        raise UsageError(f"--every {every!r} is too short: the shortest interval is 1s")
    return every.strip()


def check_root(root: Path) -> None:
    """Installing on this system needs root: said first, before any other complaint."""
    if root == Path("/") and os.geteuid() != 0:
        command = shlex.join([sys.executable, *sys.argv])
        raise PermissionRefused(
            f"the units go to /{UNIT_DIR}, which only root may write: run it with sudo: "
            f"sudo {command}"
        )


def service_user(user: str | None, root: Path) -> str:
    """--user, else whoever ran sudo; never root, and known here when installing here."""
    import pwd

    user = user or os.environ.get("SUDO_USER", "")
    if not user or user == "root":
        raise UsageError("name the user who takes the photos (not root): --user NAME")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", user):
        raise UsageError(f"--user {user!r} is not a user name")
    uid = None
    if root == Path("/"):  # below another root the user may exist only there
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            raise UsageError(f"--user {user!r}: no such user") from None
    if user == "nobody" or uid == NOBODY_UID:
        raise UsageError(
            f"--user {user}: systemd calls a service run as nobody unsafe; "
            "name the user who takes the photos: --user NAME"
        )
    return user


def service_python() -> Path:
    """The checkout's .venv python if there is one, else the python running this."""
    venv_python = CHECKOUT / ".venv" / "bin" / "python"
    return venv_python if os.access(venv_python, os.X_OK) else Path(sys.executable)


def required_modules(machine: str) -> tuple[str, ...]:
    return REQUIRED_MODULES + (("picamera2",) if machine in PI_MACHINES else ())


def check_interpreter(python: Path, modules: tuple[str, ...]) -> None:
    """Run python as the service will (no PYTHONPATH, no user site) and import modules."""
    import subprocess

    try:
        result = subprocess.run(
            [str(python), "-I", "-c", IMPORT_CHECK, *modules],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"cannot run {python} for the timer: {error}") from error
    missing = result.stdout.split() if result.returncode == 0 else list(modules)
    if not missing:
        return
    if "picamera2" in missing:
        hint = "sudo apt install python3-picamera2, and make the venv with --system-site-packages"
    elif python.parent.parent == CHECKOUT / ".venv":
        hint = f"{python.parent / 'pip'} install -r {CHECKOUT / 'requirements.txt'}"
    else:
        hint = VENV_HINT
    raise ConfigError(
        f"{python} cannot import {', '.join(missing)}, so the timer could not run snap: {hint}"
    )


def check_not_in_tmp(paths: list[Path]) -> None:
    """The service has a /tmp and /var/tmp of its own (PrivateTmp=): what it needs from the
    real ones it would not find."""
    for path in paths:
        real = Path(os.path.realpath(path))
        for tmp in TMP_DIRS:
            if real == tmp or tmp in real.parents:
                raise UsageError(
                    f"{path} is in {tmp}, which the service cannot see (it has a {tmp} of "
                    "its own): move the checkout, e.g. into your home directory"
                )


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


def protect_home(needed: list[Path]) -> dict[str, list[str]]:
    """ProtectHome= and the directories snap needs from under it, mounted back read-only."""
    under_home = {path for path in needed if any(path.is_relative_to(home) for home in HOME_DIRS)}
    outermost = sorted(
        path
        for path in under_home
        if not any(path != other and path.is_relative_to(other) for other in under_home)
    )
    if not outermost:
        return {"ProtectHome": ["yes"], "BindReadOnlyPaths": []}
    return {
        "ProtectHome": ["tmpfs"],
        "BindReadOnlyPaths": [" ".join(unit_path(path) for path in outermost)],
    }


def set_values(text: str, values: dict[str, list[str]]) -> str:
    """The unit text with each key's lines replaced by its values (none: the line goes)."""
    lines = []
    done = set()
    for line in text.splitlines(keepends=True):
        key = line.partition("=")[0]
        if key not in values:
            lines.append(line)
        elif key not in done:
            lines.extend(f"{key}={value}\n" for value in values[key])
            done.add(key)
    return "".join(lines)


def render_units(app_dir: Path, python: Path, user: str, every: str) -> dict[str, str]:
    """The text of each unit file, by its path below the unit directory."""
    values = {
        "User": [user],
        "OnUnitActiveSec": [every],
        **protect_home([app_dir, *interpreter_dirs(python)]),
    }
    units = {}
    for name in UNIT_FILES:
        text = (TIMERS / name).read_text()
        text = text.replace(TEMPLATE_PYTHON, unit_path(python))
        text = text.replace(TEMPLATE_CHECKOUT, unit_path(app_dir))
        text = text.replace(f" every {TEMPLATE_EVERY}", f" every {every}")
        units[name] = set_values(text, values)
    return units


def compile_package() -> None:
    """Cached bytecode for every module, where the service will find it."""
    if not compileall.compile_dir(str(PACKAGE_DIR), quiet=1):
        log.warning("could not byte-compile %s: every run will compile it", PACKAGE_DIR)


def unit_file_error(error: OSError, doing: str) -> SnapError:
    """The one line for a unit file that could not be written or removed."""
    if isinstance(error, PermissionError):
        return PermissionRefused(
            f"cannot {doing} {error.filename}: permission denied; run it as root (sudo)"
        )
    return WriteError(f"cannot {doing} {error.filename}: {error.strerror}")


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
        log.warning("systemctl %s failed: %s", " ".join(arguments), reason.strip())


def install_timer(every: str | None, user: str | None, root: Path | None, quiet: bool) -> int:
    """Write the units for this checkout below root (None: this system), run every `every`
    as `user` (None: whoever ran sudo)."""
    root = root or Path("/")
    check_root(root)
    every = check_interval(DEFAULT_EVERY if every is None else every)
    python = service_python()
    if root == Path("/"):
        check_not_in_tmp([CHECKOUT, *interpreter_dirs(python)])
    user = service_user(user, root)
    check_interpreter(python, required_modules(platform.machine()))
    units = render_units(CHECKOUT, python, user, every)
    unit_dir = root / UNIT_DIR
    try:
        for name, text in units.items():
            (unit_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (unit_dir / name).write_text(text)
    except OSError as error:
        raise unit_file_error(error, "write") from error
    compile_package()
    if root == Path("/"):
        systemctl("daemon-reload")
    if quiet:
        return os.EX_OK
    print(f"installed {', '.join(units)} in {unit_dir} (every {every}, as {user})")
    if root == Path("/"):
        print("next: sudo systemctl enable --now snap.timer (or snap@0.timer snap@1.timer)")
        print("      after reinstalling: sudo systemctl restart snap.timer")
    else:  # another system's tree: enabled there, started when that system boots
        where = shlex.quote(f"--root={root}")
        print(f"next: sudo systemctl {where} enable snap.timer (or snap@0.timer snap@1.timer)")
    return os.EX_OK


def installed_files(unit_dir: Path) -> list[Path]:
    """snap's unit files in unit_dir, and the links that enable its timers."""
    wants = unit_dir / "timers.target.wants"
    return [unit_dir / name for name in UNIT_FILES if os.path.lexists(unit_dir / name)] + [
        wants / name for name in listing(wants) if re.fullmatch(r"snap(@[^/]+)?\.timer", name)
    ]


def listing(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def uninstall_timer(root: Path | None, quiet: bool) -> int:
    """Remove snap's units and the links that enable its timers below root (None: this
    system), stopping the timers on this system."""
    root = root or Path("/")
    check_root(root)
    unit_dir = root / UNIT_DIR
    try:
        files = installed_files(unit_dir)
        for path in files:
            path.unlink()
            if path.name in DROP_INS and not listing(path.parent):
                path.parent.rmdir()
    except OSError as error:
        raise unit_file_error(error, "remove") from error
    if root == Path("/") and files:
        enabled = [path.name for path in files if path.parent.name == "timers.target.wants"]
        if enabled:  # still loaded until the reload; a shot already running is left to finish
            systemctl("stop", *enabled)
        systemctl("daemon-reload")
    if not quiet:
        removed = ", ".join(str(path.relative_to(unit_dir)) for path in files)
        print(f"removed {removed} from {unit_dir}" if files else f"no snap units in {unit_dir}")
    return os.EX_OK
