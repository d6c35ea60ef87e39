"""The Redis password never shows in what snap prints: errors, --json, --check, --verbose."""

from __future__ import annotations

import pytest
from helpers import PASSWORD, free_port, running_redis

MISPLACED = ["Qx#Zy-97", "Qx/Zy-97", "Qx?Zy-97", "Qx#Wv/Zy?Kj"]


MODES = [[], ["--verbose"], ["--check"], ["--json"], ["--json", "--verbose"]]


@pytest.mark.parametrize("password", MISPLACED)
@pytest.mark.parametrize("mode", MODES, ids=lambda mode: " ".join(mode) or "plain")
def test_password_with_unencoded_delimiters_is_refused_and_never_printed(
    run_snap, camera_dir, password, mode
):
    result = run_snap(*mode, REDIS_URL=f"redis://user:{password}@127.0.0.1:6379/0")

    assert result.returncode == 78
    printed = result.stdout + result.stderr
    for piece in {password, *password.replace("#", "/").replace("?", "/").split("/")}:
        assert piece not in printed, piece
    assert "REDIS_URL='redis://user:****@127.0.0.1:6379/0' is invalid" in result.stderr
    assert "%23" in result.stderr


@pytest.fixture
def one_letter_redis(tmp_path):
    with running_redis(tmp_path / "one-letter", "--requirepass", "e") as server:
        yield server


@pytest.mark.parametrize("mode", [[], ["--verbose"], ["--check"]], ids=["plain", "-v", "check"])
def test_one_letter_password_mangles_no_line(run_snap, one_letter_redis, mode):
    result = run_snap(
        *mode,
        REDIS_URL=f"redis://:e@127.0.0.1:{one_letter_redis.port}",
        CAMERA_METADATA="SensorTemperature",  # the fake camera reports none: a warning
    )

    assert result.returncode == 0, result.stdout + result.stderr
    printed = result.stdout + result.stderr
    assert "****" not in printed.replace(":****@", "")
    if mode != ["--check"]:
        assert "warning: the camera reported no SensorTemperature metadata\n" in result.stderr
    if not mode:
        assert result.stdout.startswith("stored image:") and "expires in 3600 s" in result.stdout
    if mode == ["--check"]:
        assert f"redis: ok (redis://:****@127.0.0.1:{one_letter_redis.port}, " in result.stdout


@pytest.mark.parametrize("name", ["password", "PASSWORD", "Password"])
def test_query_password_is_masked_in_any_letter_case(run_snap, name):
    result = run_snap("--check", REDIS_URL=f"redis://127.0.0.1:1/0?{name}=hunter2xyz")

    # redis-py knows only "password": another spelling is refused, not passed on.
    assert result.returncode == (75 if name == "password" else 78)
    assert "hunter2xyz" not in result.stdout + result.stderr
    assert f"?{name}=****" in result.stdout + result.stderr


def test_invalid_redis_url_message_masks_the_password(run_snap):
    result = run_snap(REDIS_URL="http://user:hunter2secret@example:6379")

    assert result.returncode == 78
    assert "hunter2secret" not in result.stderr
    assert "****" in result.stderr


def test_unreachable_redis_ping_shows_no_password(run_snap):
    port = free_port()

    result = run_snap("--check", REDIS_URL=f"redis://garden:{PASSWORD}@127.0.0.1:{port}")

    assert f"; check that Redis runs: redis-cli -u redis://garden:****@127.0.0.1:{port} ping\n" in (
        result.stdout
    )
    assert PASSWORD not in result.stdout + result.stderr


def test_password_never_appears_in_json_or_check(run_snap, locked_redis):
    url = f"redis://default:{PASSWORD}@127.0.0.1:{locked_redis.port}"

    shot = run_snap("--json", "--verbose", REDIS_URL=url)
    check = run_snap("--check", "--verbose", REDIS_URL=url)

    assert shot.returncode == 0 and check.returncode == 0
    for text in (shot.stdout, shot.stderr, check.stdout, check.stderr):
        assert PASSWORD not in text
