"""The command line: flags, help, version and usage errors."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT, camera_events

VARIABLES = [
    "REDIS_URL",
    "REDIS_TIMEOUT",
    "REDIS_CLUSTER",
    "IMAGE_EXPIRY",
    "IMAGE_KEY_PREFIX",
    "CAMERA_NAME",
    "STATUS_PREFIX",
    "CAMERA_NUM",
    "IMAGE_WIDTH",
    "IMAGE_HEIGHT",
    "JPEG_QUALITY",
    "CAMERA_HFLIP",
    "CAMERA_VFLIP",
    "CAMERA_AUTOFOCUS",
    "AUTOFOCUS_TIMEOUT",
    "SETTLE_TIMEOUT",
    "MIN_LUX",
    "CAPTURE_TIMEOUT",
    "CAMERA_METADATA",
    "RUN_TIMEOUT",
    "LOCK_TIMEOUT",
    "LOCK_DIR",
    "SPOOL_DIR",
    "SPOOL_MAX_MB",
]


def documented_variables(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text, flags=re.MULTILINE)


def test_help_lists_every_variable_and_exit_code(run_snap):
    result = run_snap("--help")

    assert result.returncode == 0
    for name in VARIABLES:
        assert re.search(rf"^  {name} ", result.stdout, re.MULTILINE), name
    for code in ("64", "69", "75", "77", "78"):
        assert re.search(rf"^  {code} ", result.stdout, re.MULTILINE), code


def test_help_lists_the_exit_codes_of_a_run_stopped_by_a_signal(run_snap):
    result = run_snap("--help")

    assert re.search(r"^  129, 130, 143  stopped by SIGHUP, SIGINT .+ SIGTERM", result.stdout, re.M)


def test_help_does_not_import_the_camera_or_redis(run_snap):
    result = run_snap("--help", PYTHONVERBOSE="1")

    assert result.returncode == 0
    assert "import 'redis'" in run_snap("--check", PYTHONVERBOSE="1").stderr
    assert "import 'redis'" not in result.stderr
    assert "import 'picamera2'" not in result.stderr


@pytest.mark.parametrize(
    ("document", "pattern"),
    [
        ("env.example", r"^#? ?([A-Z][A-Z_]+)="),
        ("docs/configuration.md", r"^\| `([A-Z][A-Z_]+)` \|"),
    ],
)
def test_document_lists_the_same_variables_as_help(run_snap, document, pattern):
    help_text = run_snap("--help").stdout

    in_help = documented_variables(help_text, r"^  ([A-Z][A-Z_]+) ")
    in_document = documented_variables((ROOT / document).read_text(), pattern)

    assert in_document == in_help


def test_help_into_a_full_stdout_still_exits_0(run_snap):
    with open("/dev/full", "w") as full:
        result = run_snap("--help", stdout=full)

    assert (result.returncode, result.stderr) == (0, "")


def test_version_prints_the_version(run_snap):
    result = run_snap("--version")

    assert result.returncode == 0
    assert re.fullmatch(r"snap \d+\.\d+\.\d+\n", result.stdout)


def test_unknown_flag_exits_64_with_one_line(run_snap):
    result = run_snap("--bogus")

    assert result.returncode == 64
    assert result.stderr.count("\n") == 1
    assert "--bogus" in result.stderr


def test_dry_run_and_check_together_exit_64(run_snap):
    result = run_snap("--dry-run", "--check")

    assert result.returncode == 64
    assert "not allowed with" in result.stderr


@pytest.mark.parametrize("option", [["--every", "5min"], ["--user", "pi"], ["--root", "/tmp"]])
def test_timer_option_without_install_timer_exits_64(run_snap, camera_dir, option):
    result = run_snap(*option)

    assert result.returncode == 64
    assert f"{option[0]} goes with --install-timer" in result.stderr
    assert camera_events(camera_dir) == []


def test_output_into_missing_directory_exits_64_before_the_camera(run_snap, tmp_path, camera_dir):
    result = run_snap("--output", str(tmp_path / "missing" / "shot.jpg"))

    assert result.returncode == 64
    assert "--output" in result.stderr
    assert camera_events(camera_dir) == []


def test_missing_env_file_exits_64(run_snap, tmp_path):
    result = run_snap("--env-file", str(tmp_path / "nothing.env"))

    assert result.returncode == 64
    assert "nothing.env" in result.stderr
