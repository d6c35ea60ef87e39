"""What a newcomer meets: .env read once, by snap, as --check reads it; --install-timer
without sudo; a misspelt setting; a broken picamera2; the redis-cli, cron and hand-shot
lines of the README and docs/, run as written."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    camera_events,
    make_app,
    running_redis,
)

from snapcam.units import UNIT_FILES

DOCUMENTED_CHECKOUT = "/home/pi/snap"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# All that cron gives a job (HOME is added per test).
CRON_ENV = {"LOGNAME": "pi", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}


# --- Helpers -----------------------------------------------------------------


def code_lines(document: Path) -> list[str]:
    """The lines of the document's fenced code blocks."""
    blocks = re.findall(r"^ *```\w*\n(.*?)^ *```", document.read_text(), re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def sh(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The command run by /bin/sh in cwd, with nothing inherited but PATH."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )


def unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def service_text(unit: Path) -> str:
    """The service and its drop-ins, as systemd reads them."""
    drop_ins = sorted(unit.parent.joinpath(f"{unit.name}.d").glob("*.conf"))
    return "".join(path.read_text() for path in [unit, *drop_ins])


def run_service(unit: Path, instance: str, state: Path, **camera: str):
    """The service's ExecStart as systemd runs it: its own environment only (Environment=;
    systemd is given no env file), the fake camera's variables standing in for the hardware."""
    text = service_text(unit).replace("%i", instance)
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"}
    environment.update(STATE_DIRECTORY=str(state), **camera)
    environment.update(value.split("=", 1) for value in unit_values(text, "Environment"))
    [exec_start] = unit_values(text, "ExecStart")
    return subprocess.run(
        shlex.split(exec_start), env=environment, capture_output=True, text=True, timeout=60
    )


def run_cron(command: str, home: Path, path: str = "/usr/bin:/bin", **variables: str):
    """The command as cron runs it: /bin/sh -c in cron's bare environment."""
    environment = {**CRON_ENV, "PATH": path, "HOME": str(home), **variables}
    assignments = [f"{name}={value}" for name, value in environment.items()]
    return subprocess.run(
        ["env", "-i", *assignments, "/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def crontab_line(text: str, marker: str) -> str:
    """The one crontab line holding marker, its command only."""
    lines = [line.strip() for line in text.splitlines()]
    [line] = [line for line in lines if marker in line and line[:1] in "*0123456789"]
    return line.split(None, 5)[5]


# --- Fixtures ----------------------------------------------------------------


@pytest.fixture
def checkout(checkout, dotenv) -> Path:
    """conftest's checkout as the README installs it, with its .env for the test Redis."""
    return checkout


@pytest.fixture
def units(checkout, tmp_path) -> Path:
    root = tmp_path / "root"
    result = subprocess.run(
        [str(checkout / ".venv/bin/python"), str(checkout / "snap.py"), "--install-timer"]
        + ["--root", str(root), "--user", "pi"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return root / "etc/systemd/system"


# --- 1. .env has one reader --------------------------------------------------


def test_no_installed_unit_hands_an_env_file_to_systemd(units):
    readers = [name for name in UNIT_FILES if "EnvironmentFile=" in (units / name).read_text()]

    assert readers == []


def test_the_timers_run_reads_env_as_check_does(checkout, units, redis_db, camera_dir, tmp_path):
    # Lines systemd's EnvironmentFile= would read otherwise: a comment after the value
    # (systemd: "300 # five minutes", exit 78) and an export (systemd: ignored).
    with open(checkout / ".env", "a") as env:
        env.write("IMAGE_EXPIRY=300 # five minutes\nexport CAMERA_NAME=garden\n")
    snap = [str(checkout / ".venv/bin/python"), str(checkout / "snap.py")]
    check = subprocess.run(
        [*snap, "--check"],
        env={"PATH": os.environ["PATH"], "FAKE_CAMERA_DIR": str(camera_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    shot = run_service(
        units / "snap.service", "", tmp_path / "state", FAKE_CAMERA_DIR=str(camera_dir)
    )

    assert check.returncode == 0, check.stdout + check.stderr
    assert shot.returncode == 0, shot.stderr
    [key] = redis_db.keys("image:*")
    assert 290 < redis_db.ttl(key) <= 300
    assert redis_db.hget(key, "camera") == b"garden"


def test_second_cameras_hand_shot_reads_its_env_file_as_its_timer_does(
    checkout, units, redis_db, camera_dir, tmp_path
):
    [line] = [
        line for line in code_lines(ROOT / "docs" / "timers.md") if line.startswith("CAMERA_NUM=1 ")
    ]
    (checkout / ".env.camera1").write_text("CAMERA_NAME=garden-cam1\n")
    cameras = {"FAKE_CAMERA_DIR": str(camera_dir), "FAKE_CAMERA_COUNT": "2"}

    by_hand = sh(line.split("#")[0], checkout, **cameras)
    by_timer = run_service(units / "snap@.service", "1", tmp_path / "state", **cameras)

    assert by_hand.returncode == 0, by_hand.stderr
    assert by_timer.returncode == 0, by_timer.stderr
    opened = [event for event in camera_events(camera_dir) if event.startswith("open")]
    assert opened == ["open 1", "open 1"]
    assert {redis_db.hget(key, "camera") for key in redis_db.keys("image:*")} == {b"garden-cam1"}


def test_a_variable_in_env_that_is_no_setting_does_not_reach_the_run(checkout, camera_dir):
    # Under the timer nothing but snap reads .env: a variable for another program set there
    # would reach it by hand and not under systemd, were it taken.
    with open(checkout / ".env", "a") as env:
        env.write("FAKE_CAMERA_FAULTS=absent\n")

    result = sh(".venv/bin/python snap.py --dry-run", checkout, FAKE_CAMERA_DIR=str(camera_dir))

    assert result.returncode == 0, result.stderr
    assert "open 0" in camera_events(camera_dir)


# --- 2. --install-timer without sudo ---------------------------------------------


NOT_ROOT = """
import os, runpy, sys
os.geteuid = lambda: 1000
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("option", ["--install-timer", "--uninstall-timer"])
def test_installing_for_this_system_not_as_root_says_sudo_first(tmp_path, option):
    # A checkout in /tmp, no --user and no SUDO_USER: each was complained about first.
    snap = make_app(tmp_path / "snap")
    assert str(tmp_path).startswith("/tmp/")

    result = subprocess.run(
        [sys.executable, "-c", NOT_ROOT, str(snap), option],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 77
    assert result.stderr == (
        "snap: error: the units go to /etc/systemd/system, which only root may write: "
        f"run it with sudo: sudo {sys.executable} {snap} {option}\n"
    )


# --- 3. A misspelt setting ---------------------------------------------------------


def test_a_misspelt_setting_is_named_with_the_one_it_resembles(checkout, camera_dir):
    with open(checkout / ".env", "a") as env:
        env.write("IMAGE_EXPRY=60\nLOCKDIR=/run/lock\nFAKE_CAMERA_MODEL=imx708\n")

    result = sh(".venv/bin/python snap.py --check", checkout, FAKE_CAMERA_DIR=str(camera_dir))

    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        f"snap: warning: IMAGE_EXPRY in {checkout}/.env is not a setting and is ignored; "
        "did you mean IMAGE_EXPIRY?",
        f"snap: warning: LOCKDIR in {checkout}/.env is not a setting and is ignored; "
        "did you mean LOCK_DIR?",
    ]


# --- 4. picamera2 missing or broken -------------------------------------------------


BROKEN_PICAMERA2 = {
    "missing": None,
    "needs PIL": 'raise ModuleNotFoundError("No module named \'PIL\'", name="PIL")',
    "numpy": 'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")',
}


@pytest.mark.parametrize("fault", BROKEN_PICAMERA2)
def test_picamera2_not_installed_is_told_from_installed_but_broken(run_snap, tmp_path, fault):
    packages = tmp_path / "site"
    (packages / "libcamera").mkdir(parents=True)
    (packages / "libcamera" / "__init__.py").write_text("")
    if BROKEN_PICAMERA2[fault]:
        (packages / "picamera2").mkdir()
        (packages / "picamera2" / "__init__.py").write_text(BROKEN_PICAMERA2[fault] + "\n")

    result = run_snap("--dry-run", PYTHONPATH=str(packages))

    assert result.returncode == 69
    assert result.stderr.count("\n") == 1
    if fault == "missing":
        assert result.stderr.startswith(
            "snap: error: picamera2 is not installed: sudo apt install python3-picamera2"
        )
    elif fault == "needs PIL":
        assert result.stderr.startswith(
            "snap: error: picamera2 is installed but fails to import "
            "(ModuleNotFoundError: No module named 'PIL'); it needs PIL, "
        )
    else:
        assert result.stderr.startswith(
            "snap: error: picamera2 is installed but fails to import (ValueError: numpy"
        )
        assert f"{sys.prefix}/bin/pip uninstall numpy" in result.stderr


# --- 5. redis-cli, on the Redis snap uses ---------------------------------------


def redis_cli_lines() -> list[tuple[str, str]]:
    return [
        (document.name, line)
        for document in DOCUMENTS
        for line in code_lines(document)
        if "redis-cli" in line and not line.startswith(("snap:", "20", "ACL ", "FT."))
    ]


def test_every_redis_cli_line_of_the_docs_goes_through_snap():
    bare = [(name, line) for name, line in redis_cli_lines() if "snap.py --redis-cli" not in line]

    assert bare == []
    assert len(redis_cli_lines()) >= 8


@pytest.mark.parametrize(("document", "line"), redis_cli_lines())
def test_redis_cli_line_reaches_the_redis_of_env_as_written(
    checkout, redis_db, camera_dir, document, line
):
    shot = sh(".venv/bin/python snap.py --json", checkout, FAKE_CAMERA_DIR=str(camera_dir))
    assert shot.returncode == 0, shot.stderr
    [key] = [key.decode() for key in redis_db.keys("image:*")]
    redis_db.hset("snap:camera:shed", "last_run", 1)
    command = line.replace("image:1700000000", key).replace(DOCUMENTED_CHECKOUT, str(checkout))

    result = sh(command, checkout)

    assert (result.returncode, result.stderr) == (0, b""), command
    assert b"ERR" not in result.stdout and b"(error)" not in result.stdout
    if "--scan" in line:
        assert key in result.stdout.decode().split()
    elif "> shot.jpg" in line:
        assert (checkout / "shot.jpg").read_bytes()[:2] == b"\xff\xd8"
    elif " del " in line:
        assert redis_db.exists("snap:camera:shed") == 0
    else:
        assert result.stdout.strip(), command


def test_redis_cli_takes_the_password_from_env_not_the_command_line(checkout, tmp_path):
    # An ACL user with a password redis-cli could not take unencoded in a URL.
    acl = ("--user", "default", "off", "--user", "garden", "on", ">pa$$w:rd", "~*", "+@all")
    with running_redis(tmp_path / "acl", *acl) as server:
        (checkout / ".env").write_text(
            f"REDIS_URL='redis://garden:pa%24%24w%3Ard@127.0.0.1:{server.port}'\n"
        )

        result = sh(".venv/bin/python snap.py --redis-cli acl whoami", checkout)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"garden\n", b"")


# --- 6. The cron lines ----------------------------------------------------------


@pytest.fixture
def crontab(tmp_path) -> Path:
    """A crontab command that keeps the crontab in a file (crontab -l; crontab -)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = tmp_path / "crontab.txt"
    script = bin_dir / "crontab"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -l ]; then cat {table} 2>/dev/null || '
        "{ echo 'no crontab for pi' >&2; exit 1; }; "
        f'elif [ "$1" = - ]; then cat > {table}.new && mv {table}.new {table}; else exit 2; fi\n'
    )
    script.chmod(0o755)
    return table


def test_the_cron_install_line_run_twice_adds_its_line_once(crontab, tmp_path):
    [install] = [
        line for line in code_lines(ROOT / "docs" / "cron.md") if line.endswith("| crontab -")
    ]
    assert install in (ROOT / "timers" / "snap.cron").read_text()
    crontab.write_text('MAILTO=""\n0 * * * * other-job\n')
    path = f"{crontab.parent / 'bin'}:{os.environ['PATH']}"

    for _ in range(2):
        result = sh(install, ROOT, PATH=path)
        assert result.returncode == 0, result.stderr

    lines = crontab.read_text().splitlines()
    assert lines[:2] == ['MAILTO=""', "0 * * * * other-job"]
    assert [line for line in lines if "snap.py" in line] == [
        line for line in (ROOT / "timers" / "snap.cron").read_text().splitlines() if line[:1] == "*"
    ]


def watch_lines() -> dict[str, str]:
    text = (ROOT / "docs" / "deployments.md").read_text()
    return {
        "journal": crontab_line(text, "logger"),
        "ping": crontab_line(text, "curl"),
    }


@pytest.fixture
def fleet(checkout, camera_dir, redis_db):
    """One camera, in a Redis of its own, that stored a shot."""
    shot = sh(".venv/bin/python snap.py", checkout, FAKE_CAMERA_DIR=str(camera_dir))
    assert shot.returncode == 0, shot.stderr


@pytest.fixture
def logger_stub(tmp_path) -> Path:
    """logger, writing its arguments and what it reads to a file."""
    bin_dir = tmp_path / "logger-bin"
    bin_dir.mkdir()
    log = tmp_path / "journal.txt"
    (bin_dir / "logger").write_text(f'#!/bin/sh\n{{ echo "$*"; cat; }} >> {log}\n')
    (bin_dir / "logger").chmod(0o755)
    return log


def test_watch_line_logs_nothing_while_every_camera_stores_shots(
    checkout, fleet, logger_stub, tmp_path
):
    command = watch_lines()["journal"].replace(DOCUMENTED_CHECKOUT, str(checkout))

    result = run_cron(command, tmp_path, path=f"{logger_stub.parent / 'logger-bin'}:/usr/bin:/bin")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not logger_stub.exists()


def test_watch_line_logs_an_error_to_the_journal_when_a_camera_went_quiet(
    checkout, fleet, logger_stub, redis_db, tmp_path
):
    command = watch_lines()["journal"].replace(DOCUMENTED_CHECKOUT, str(checkout))
    [key] = redis_db.keys("snap:camera:*")
    redis_db.hset(key, "last_stored", int(__import__("time").time()) - 700)

    result = run_cron(command, tmp_path, path=f"{logger_stub.parent / 'logger-bin'}:/usr/bin:/bin")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    arguments, *logged = logger_stub.read_text().splitlines()
    assert arguments == "-t snap-status -p user.err"
    assert "STALE, last shot 11 min ago" in logged[0]


def test_watch_lines_logger_options_are_ones_this_logger_takes():
    command = watch_lines()["journal"]
    options = command[command.index("logger") :].split()[1:]

    result = subprocess.run(
        ["logger", "--no-act", "--stderr", "--socket-errors=off", *options],
        input="shed: STALE\n",
        capture_output=True,
        text=True,
        timeout=10,
    )

    assert result.returncode == 0, result.stderr
    assert "snap-status" in result.stderr and "shed: STALE" in result.stderr


class Pings(http.server.BaseHTTPRequestHandler):
    received: list[str] = []

    def do_GET(self):  # noqa: N802 -- the name http.server calls
        Pings.received.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("quiet", [False, True], ids=["all well", "a camera quiet"])
def test_ping_line_pings_only_while_every_camera_stores_shots(
    checkout, fleet, redis_db, tmp_path, quiet
):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pings)  # listening: ready
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Pings.received = []
    url = f"http://127.0.0.1:{server.server_address[1]}/ping"
    command = re.sub(r"https://hc-ping\.com/\S+", url, watch_lines()["ping"])
    command = command.replace(DOCUMENTED_CHECKOUT, str(checkout))
    if quiet:
        [key] = redis_db.keys("snap:camera:*")
        redis_db.hset(key, "last_stored", int(__import__("time").time()) - 700)

    try:
        result = run_cron(command, tmp_path)
    finally:
        server.shutdown()
        server.server_close()

    assert (result.stdout, result.stderr) == ("", "")
    assert Pings.received == ([] if quiet else ["/ping"])


# --- 8. --verbose on a good shot ------------------------------------------------


def test_verbose_shows_each_step_with_its_time_and_the_exposure(run_snap):
    result = run_snap("--dry-run", "--verbose")

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    steps = [line.split(": ", 2)[2] for line in lines if re.match(r"snap: \d+\.\d\d s: ", line)]
    assert steps[-3:] == ["waiting for exposure to settle", "capturing", "closing the camera"]
    assert "snap: exposure settled on frame 4" in lines
    assert "snap: exposure: time 20 ms, analogue gain 2.00, digital gain 1.00, lux 401, " in (
        result.stderr
    )


def test_a_good_shot_without_verbose_prints_its_one_line(run_snap):
    result = run_snap("--dry-run")

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("captured ") and result.stdout.count("\n") == 1
