"""Timers: the systemd units and the cron line, checked by systemd's own tools and run for real."""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import ROOT, camera_events, make_app, make_venv, run_command, system_python, write_env

from snapcam.config import SETTINGS
from snapcam.errors import ConfigError, UsageError
from snapcam.units import (
    UNIT_FILES,
    check_interpreter,
    check_not_in_tmp,
    render_units,
    required_modules,
)

TIMERS = ROOT / "timers"
UNIT_DIR = Path("etc/systemd/system")
# The checkout the README installs, for which the files in timers/ are written.
DOCUMENTED_CHECKOUT = Path("/home/pi/snap")
# systemd's PATH for a service; the rest of its environment comes from EnvironmentFile=.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
# All that cron gives a job (HOME is added per test).
CRON_ENV = {"LOGNAME": "pi", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
NOBODY = 65534
# Run in a fresh python: prints the site-packages modules that snap's own imports bring in,
# and async_timeout, which redis imports on an older python than the tests' own.
SNAP_SITE_MODULES = """
import environs, marshmallow.validate, redis, redis.backoff, redis.cluster, redis.retry
import async_timeout
import site, sys
roots = tuple(site.getsitepackages())
for top in sorted({name.partition(".")[0] for name in sys.modules}):
    path = getattr(sys.modules.get(top), "__file__", None) or ""
    if path.startswith(roots):
        print(path[: -len("/__init__.py")] if path.endswith("/__init__.py") else path)
"""


# --- Helpers -----------------------------------------------------------------


def installed(unit_dir: Path) -> list[str]:
    """The files below unit_dir, by their paths relative to it."""
    return sorted(str(path.relative_to(unit_dir)) for path in unit_dir.rglob("*") if path.is_file())


def unit_values(text: str, key: str) -> list[str]:
    """Every value given to key in a unit file, in order."""
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def systemd_analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "--no-pager", *args],
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_LOG_LEVEL": "info"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def span_seconds(span: str) -> float:
    """A time span as systemd reads it."""
    result = systemd_analyze("timespan", span)
    assert result.returncode == 0, result.stderr
    return int(re.search(r"μs: (\d+)", result.stdout).group(1)) / 1e6


def read_env(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def snap_command(checkout: Path, *args: str) -> list[str]:
    return [str(checkout / ".venv" / "bin" / "python"), str(checkout / "snap.py"), *args]


def install(checkout: Path, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_command(snap_command(checkout, "--install-timer", "--root", str(root), *args), **env)


def service_text(unit: Path) -> str:
    """The service and its drop-ins, as systemd reads them: the unit, then each .conf."""
    drop_ins = sorted(unit.parent.joinpath(f"{unit.name}.d").glob("*.conf"))
    return "".join(path.read_text() for path in [unit, *drop_ins])


def run_unit(
    unit: Path, instance: str, state_dir: Path, **camera: str
) -> subprocess.CompletedProcess:
    """The unit's ExecStart, run as systemd would: its Environment= and EnvironmentFile=
    (none: snap.py reads .env itself) in order. The fake camera's own variables stand in for
    the hardware: snap.py reads only its own from .env."""
    text = service_text(unit).replace("%i", instance)
    environment = {"PATH": SERVICE_PATH, "STATE_DIRECTORY": str(state_dir), **camera}
    for value in unit_values(text, "Environment"):
        environment.update([value.split("=", 1)])
    for value in unit_values(text, "EnvironmentFile"):
        path = Path(value.lstrip("-"))
        if path.exists():
            environment.update(read_env(path))
    [exec_start] = unit_values(text, "ExecStart")
    return subprocess.run(
        shlex.split(exec_start), env=environment, capture_output=True, text=True, timeout=60
    )


def cron_command(checkout: Path) -> str:
    """The command of the crontab line in timers/snap.cron, for this checkout."""
    lines = (TIMERS / "snap.cron").read_text().splitlines()
    [line] = [line for line in lines if line and not line.startswith("#")]
    return line.split(None, 5)[5].replace(str(DOCUMENTED_CHECKOUT), str(checkout))


def run_cron(command: str, home: Path, **camera: str) -> subprocess.CompletedProcess:
    """The command as cron runs it: /bin/sh -c in cron's bare environment. The fake camera's
    own variables stand in for the hardware: snap.py reads only its own from .env."""
    variables = {**CRON_ENV, "HOME": str(home), **camera}
    assignments = [f"{name}={value}" for name, value in variables.items()]
    return subprocess.run(
        ["env", "-i", *assignments, "/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def readable_directory() -> Path:
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    return directory


def as_unprivileged() -> list[str]:
    """A command prefix that drops root, if the tests run as root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


# --- Fixtures ----------------------------------------------------------------


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def units(checkout, root) -> Path:
    """The directory of the units installed for the checkout."""
    result = install(checkout, root, "--user", "pi")
    assert result.returncode == 0, result.stderr
    return root / UNIT_DIR


@pytest.fixture(scope="session")
def readable_packages() -> Path:
    """A copy of snap's packages (redis, environs and what they import) any user can read."""
    listing = subprocess.run(
        [sys.executable, "-c", SNAP_SITE_MODULES], check=True, capture_output=True, text=True
    )
    directory = readable_directory()
    for path in map(Path, listing.stdout.split()):
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(path, directory / path.name, ignore=ignore)
        else:
            shutil.copy(path, directory)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def readable_snap(readable_packages):
    """A copy of snap.py that any user can run, with a .venv of the system's python3 that
    sees a copy of snap's packages."""
    directory = readable_directory()
    snap = make_app(directory, copy=True)
    make_venv(directory, system_python(), [str(readable_packages)])
    yield snap
    shutil.rmtree(directory)


# --- The files in timers/ ------------------------------------------------------


def test_committed_units_are_the_install_for_the_documented_checkout():
    rendered = render_units(
        DOCUMENTED_CHECKOUT, DOCUMENTED_CHECKOUT / ".venv" / "bin" / "python", "pi", "1min"
    )

    committed = {name: (TIMERS / name).read_text() for name in UNIT_FILES}
    assert committed == rendered


@pytest.mark.parametrize("name", ["snap.service", "snap@.service"])
def test_service_exposure_is_at_most_2(name):
    result = systemd_analyze("security", "--offline=yes", "--threshold=20", str(TIMERS / name))

    assert result.returncode == 0, result.stdout.splitlines()[-1]
    assert "Overall exposure level" in result.stdout


def test_only_the_timers_have_an_install_section():
    units = [path for path in TIMERS.glob("snap*") if path.suffix in (".service", ".timer")]

    sections = {path.name: "[Install]" in path.read_text() for path in units}

    assert sections == {
        "snap.service": False,
        "snap@.service": False,
        "snap.timer": True,
        "snap@.timer": True,
    }


@pytest.mark.parametrize("name", ["snap.service", "snap@.service"])
def test_service_start_timeout_outlasts_snaps_own_run_timeout(name):
    [timeout] = unit_values(service_text(TIMERS / name), "TimeoutStartSec")

    # The watchdog ends a run at most 2 s after RUN_TIMEOUT.
    assert span_seconds(timeout) > SETTINGS["RUN_TIMEOUT"].default + 2


def test_timer_accuracy_is_one_second():
    [accuracy] = unit_values((TIMERS / "snap.timer").read_text(), "AccuracySec")

    assert span_seconds(accuracy) == 1


def test_checkout_outside_home_hides_home_entirely():
    units = render_units(Path("/opt/snap"), Path("/opt/snap/.venv/bin/python"), "pi", "1min")

    text = units["snap.service.d/service.conf"]
    assert unit_values(text, "ProtectHome") == ["yes"]
    assert unit_values(text, "BindReadOnlyPaths") == []


def test_venv_outside_the_checkout_is_mounted_back_too():
    units = render_units(
        Path("/home/pi/snap"), Path("/home/pi/venvs/snap/bin/python"), "pi", "1min"
    )

    text = units["snap.service.d/service.conf"]
    assert unit_values(text, "ProtectHome") == ["tmpfs"]
    assert unit_values(text, "BindReadOnlyPaths") == ["/home/pi/snap /home/pi/venvs/snap"]


# --- --install-timer -----------------------------------------------------------


def test_installed_units_pass_systemd_analyze_verify_without_a_warning(units):
    names = ["snap.service", "snap.timer", "snap@1.service", "snap@1.timer"]

    result = systemd_analyze("verify", "--man=no", *(str(units / name) for name in names))

    assert result.returncode == 0
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize("name", ["snap.service", "snap@.service"])
def test_installed_service_exposure_is_at_most_2(units, name):
    result = systemd_analyze("security", "--offline=yes", "--threshold=20", str(units / name))

    assert result.returncode == 0, result.stdout.splitlines()[-1]


def test_install_caches_the_bytecode_of_every_module(tmp_path, root):
    snap = make_app(tmp_path / "copied", copy=True)
    package = snap.parent / "snapcam"

    # PYTHONDONTWRITEBYTECODE: no module is cached by being imported, only by the install.
    result = run_command(
        [sys.executable, str(snap), "--install-timer", "--root", str(root), "--user", "pi"],
        PYTHONDONTWRITEBYTECODE="1",
    )

    assert result.returncode == 0, result.stderr
    cached = {path.name.split(".")[0] for path in (package / "__pycache__").glob("*.pyc")}
    assert cached == {path.stem for path in package.glob("*.py")}


def test_sandbox_directives_stand_in_one_file_of_the_tree():
    skipped = ("docs", "tests", ".venv", ".git")
    holders = [
        path.relative_to(ROOT)
        for path in ROOT.rglob("*")
        if path.is_file()
        and not path.is_symlink()
        and path.relative_to(ROOT).parts[0] not in skipped
        and "NoNewPrivileges=" in path.read_text(errors="replace")
    ]

    assert holders == [Path("timers/snap.service.d/sandbox.conf")]


def test_install_prints_the_command_that_starts_the_timer(checkout, root):
    result = install(checkout, root, "--user", "pi")

    assert result.returncode == 0
    assert f"sudo systemctl --root={root} enable snap.timer" in result.stdout
    assert "--now" not in result.stdout  # below --root: nothing to start on this system


@pytest.mark.parametrize(
    ("every", "seconds"), [("30s", 30), ("5min", 300), ("1min 30s", 90), ("2h", 7200)]
)
def test_every_sets_the_interval_systemd_reads(checkout, root, every, seconds):
    install(checkout, root, "--user", "pi", f"--every={every}")

    for name in ("snap.timer", "snap@.timer"):
        [interval] = unit_values((root / UNIT_DIR / name).read_text(), "OnUnitActiveSec")
        assert span_seconds(interval) == seconds


@pytest.mark.parametrize("every", ["fast", "5 parsecs", "-5s", "1.5.2s", "", "0", "500ms"])
def test_bad_every_exits_64_and_installs_nothing(checkout, root, every):
    result = install(checkout, root, "--user", "pi", f"--every={every}")

    assert result.returncode == 64
    assert re.fullmatch(r"snap: error: --every .+\n", result.stderr)
    assert not (root / "etc").exists()


@pytest.mark.parametrize("every", ["5min\n5s", "5min\r", "\u0665min", "5min\nUser=root"])
def test_every_with_a_newline_or_non_ascii_digits_exits_64(checkout, root, every):
    result = install(checkout, root, "--user", "pi", f"--every={every}")

    assert result.returncode == 64
    assert result.stderr.startswith("snap: error: --every ") and result.stderr.count("\n") == 1
    assert not (root / "etc").exists()


def test_every_systemd_refuses_exits_64_with_its_reason(checkout, root):
    result = install(checkout, root, "--user", "pi", "--every=18446744073709s")

    assert result.returncode == 64
    assert "not a time span systemd takes: " in result.stderr
    assert "out of range" in result.stderr
    assert not (root / "etc").exists()


def test_every_is_checked_without_systemd_analyze_too(checkout, root, tmp_path):
    no_systemd = tmp_path / "bin"
    no_systemd.mkdir()

    good = install(checkout, root, "--user", "pi", "--every=5min", PATH=str(no_systemd))
    bad = install(checkout, root, "--user", "pi", "--every=5min\n5s", PATH=str(no_systemd))

    assert (good.returncode, bad.returncode) == (0, 64), good.stderr
    [interval] = unit_values((root / UNIT_DIR / "snap.timer").read_text(), "OnUnitActiveSec")
    assert interval == "5min"


def test_the_job_runs_as_the_user_who_ran_sudo(checkout, root):
    install(checkout, root, SUDO_USER="alice")

    for name in ("snap.service", "snap@.service"):
        assert unit_values(service_text(root / UNIT_DIR / name), "User") == ["alice"]


@pytest.mark.parametrize("user", [[], ["--user", "root"]], ids=["no user", "root"])
def test_install_without_an_unprivileged_user_exits_64(checkout, root, user):
    result = install(checkout, root, *user)

    assert result.returncode == 64
    assert (
        result.stderr == "snap: error: name the user who takes the photos (not root): --user NAME\n"
    )


def test_checkout_path_a_unit_cannot_hold_exits_64(tmp_path, root):
    snap = make_app(tmp_path / "my snap")

    result = run_command(
        [
            sys.executable,
            str(snap),
            "--install-timer",
            "--root",
            str(root),
            "--user",
            "pi",
        ]
    )

    assert result.returncode == 64
    assert result.stderr.startswith(f"snap: error: {snap.parent} cannot be written in a unit file")


def test_install_without_permission_exits_77(readable_snap, root):
    root.chmod(0o555)  # for a non-root run; nobody cannot even reach it

    result = run_command(
        [
            *as_unprivileged(),
            system_python(),
            str(readable_snap),
            "--install-timer",
            "--root",
            str(root),
            "--user",
            "pi",
        ]
    )

    assert result.returncode == 77
    assert re.fullmatch(
        r"snap: error: cannot write \S+: permission denied; run it as root \(sudo\)\n",
        result.stderr,
    )
    assert list(root.iterdir()) == []


def test_install_writes_the_checkouts_venv_whatever_python_ran_it(checkout, root):
    result = run_command(
        [
            sys.executable,
            str(checkout / "snap.py"),
            "--install-timer",
            "--root",
            str(root),
            "--user",
            "pi",
        ]
    )

    assert result.returncode == 0, result.stderr
    [exec_start] = unit_values((root / UNIT_DIR / "snap.service").read_text(), "ExecStart")
    assert exec_start == f"{checkout}/.venv/bin/python {checkout}/snap.py"


def test_install_refuses_a_venv_that_cannot_import_snaps_packages(tmp_path, root):
    app = make_app(tmp_path / "snap").parent
    make_venv(app, sys.executable, [])

    result = run_command(
        [
            sys.executable,
            str(app / "snap.py"),
            "--install-timer",
            "--root",
            str(root),
            "--user",
            "pi",
        ]
    )

    assert result.returncode == 78
    assert result.stderr == (
        f"snap: error: {app}/.venv/bin/python cannot import redis, environs, so the timer "
        f"could not run snap: {app}/.venv/bin/pip install -r {app}/requirements.txt\n"
    )
    assert not (root / "etc").exists()


@pytest.mark.parametrize(
    ("machine", "modules"),
    [
        ("x86_64", ("redis", "environs")),
        ("aarch64", ("redis", "environs", "picamera2")),
        ("armv7l", ("redis", "environs", "picamera2")),
        ("armv6l", ("redis", "environs", "picamera2")),
    ],
)
def test_the_python_of_a_pi_service_must_import_picamera2_too(machine, modules):
    assert required_modules(machine) == modules


def test_a_python_without_picamera2_is_refused_naming_the_apt_package():
    with pytest.raises(ConfigError, match=r"cannot import picamera2, .+ python3-picamera2"):
        check_interpreter(Path(sys.executable), ("redis", "picamera2"))


def test_install_as_nobody_exits_64(checkout, root):
    result = install(checkout, root, "--user", "nobody")

    assert result.returncode == 64
    assert result.stderr.startswith("snap: error: --user nobody: systemd calls a service run ")
    assert not (root / "etc").exists()


@pytest.mark.parametrize("tmp", ["/tmp", "/var/tmp"])
def test_install_for_this_system_refuses_a_checkout_in_tmp(tmp):
    # In process: installing for this system is refused first to anyone but root, and a
    # root run whose check failed would write to the real /etc/systemd/system.
    directory = Path(tempfile.mkdtemp(dir=tmp))
    try:
        with pytest.raises(UsageError) as refused:
            check_not_in_tmp([directory])
    finally:
        shutil.rmtree(directory)

    assert refused.value.line() == (
        f"{directory} is in {tmp}, which the service cannot see (it has a {tmp} "
        "of its own): move the checkout, e.g. into your home directory"
    )


# --- --uninstall-timer ---------------------------------------------------------


def test_uninstall_removes_the_units_and_disables_the_timers(checkout, root, units):
    subprocess.run(
        ["systemctl", f"--root={root}", "enable", "snap.timer", "snap@1.timer"],
        check=True,
        capture_output=True,
    )

    result = run_command(snap_command(checkout, "--uninstall-timer", "--root", str(root)))

    assert result.returncode == 0
    assert installed(units) == []


def test_uninstall_with_nothing_installed_exits_0(checkout, root):
    result = run_command(snap_command(checkout, "--uninstall-timer", "--root", str(root)))

    assert result.returncode == 0
    assert result.stdout.startswith("no snap units in ")


def test_uninstall_without_permission_exits_77_and_removes_nothing(readable_snap, root, units):
    units.chmod(0o555)

    try:
        result = run_command(
            [
                *as_unprivileged(),
                system_python(),
                str(readable_snap),
                "--uninstall-timer",
                "--root",
                str(root),
            ]
        )
    finally:
        units.chmod(0o755)

    assert result.returncode == 77
    assert re.fullmatch(
        r"snap: error: cannot remove \S+: permission denied; run it as root \(sudo\)\n",
        result.stderr,
    )
    assert installed(units) == sorted(UNIT_FILES)


# --- The installed service, run ----------------------------------------------


def test_installed_service_stores_a_shot(units, dotenv, redis_db, tmp_path):
    result = run_unit(units / "snap.service", "", tmp_path / "state")

    assert result.returncode == 0, result.stderr
    assert len(redis_db.keys("image:*")) == 1


def test_camera_instance_shoots_its_camera_with_its_own_settings(
    units, dotenv, checkout, redis_db, camera_dir, tmp_path
):
    write_env(checkout / ".env.camera1", IMAGE_KEY_PREFIX="image:cam1")

    result = run_unit(
        units / "snap@.service",
        "1",
        tmp_path / "state",
        FAKE_CAMERA_COUNT="2",
        FAKE_CAMERA_DIR=str(camera_dir),
    )

    assert result.returncode == 0, result.stderr
    assert "open 1" in camera_events(camera_dir)
    assert [key.decode() for key in redis_db.keys("image:*")][0].startswith("image:cam1:")


def test_camera_instance_wins_over_camera_num_in_the_env_file(
    units, dotenv, redis_db, camera_dir, tmp_path
):
    with dotenv.open("a") as shared:
        shared.write("CAMERA_NUM=0\n")

    result = run_unit(
        units / "snap@.service",
        "1",
        tmp_path / "state",
        FAKE_CAMERA_COUNT="2",
        FAKE_CAMERA_DIR=str(camera_dir),
    )

    assert result.returncode == 0, result.stderr
    assert [event for event in camera_events(camera_dir) if event.startswith("open")] == ["open 1"]


# --- The cron line -----------------------------------------------------------


def test_cron_line_stores_a_shot_in_crons_bare_environment(
    checkout, dotenv, redis_db, camera_dir, tmp_path
):
    result = run_cron(cron_command(checkout), tmp_path, FAKE_CAMERA_DIR=str(camera_dir))

    assert result.returncode == 0, (tmp_path / "snap.log").read_text()
    assert len(redis_db.keys("image:*")) == 1
    assert (tmp_path / "snap.log").read_text() == ""


def test_cron_line_skips_its_minute_while_the_previous_run_holds_the_lock(
    checkout, dotenv, redis_db, camera_dir, tmp_path
):
    with open(checkout / "snap.py") as previous_run:
        fcntl.flock(previous_run, fcntl.LOCK_EX)
        result = run_cron(cron_command(checkout), tmp_path, FAKE_CAMERA_DIR=str(camera_dir))

    assert result.returncode == 1
    assert camera_events(camera_dir) == []
    assert redis_db.keys("*") == []


def test_cron_line_kills_a_run_hung_past_its_time_limit(
    checkout, dotenv, redis_db, camera_dir, tmp_path
):
    command = cron_command(checkout)
    assert "timeout -k 10 90 " in command
    with dotenv.open("a") as settings:
        settings.write("RUN_TIMEOUT=30\n")

    started = time.monotonic()
    result = run_cron(
        command.replace("timeout -k 10 90 ", "timeout -k 1 2 "),
        tmp_path,
        FAKE_CAMERA_DIR=str(camera_dir),
        FAKE_CAMERA_FAULTS="hang-start,hang-hard",
    )

    assert result.returncode in (124, 137)
    assert time.monotonic() - started < 6
    assert "start" in camera_events(camera_dir)
    assert redis_db.keys("*") == []


# --- The OnCalendar drop-in --------------------------------------------------


def test_oncalendar_drop_in_passes_systemd_analyze_verify_without_a_warning(units):
    shutil.copytree(TIMERS / "snap.timer.d", units / "snap.timer.d")

    result = systemd_analyze("verify", "--man=no", str(units / "snap.timer"))

    assert result.returncode == 0
    assert result.stdout + result.stderr == ""


def test_oncalendar_drop_in_fires_every_five_minutes_on_the_clock():
    [calendar] = unit_values(
        (TIMERS / "snap.timer.d" / "oncalendar.conf").read_text(), "OnCalendar"
    )

    result = systemd_analyze("calendar", calendar)

    assert result.returncode == 0, result.stderr
    assert "Normalized form: *-*-* *:00/5:00" in result.stdout


def test_oncalendar_drop_in_clears_the_interval():
    text = (TIMERS / "snap.timer.d" / "oncalendar.conf").read_text()

    assert unit_values(text, "OnBootSec") == [""]
    assert unit_values(text, "OnUnitActiveSec") == [""]
