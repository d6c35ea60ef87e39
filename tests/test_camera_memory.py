"""The camera's memory (CMA) on real Pis: a full-resolution still that fits where libcamera's
buffer rules say it can, and one line with what to set where nothing fits."""

from __future__ import annotations

import pytest
from helpers import camera_events

HINT = "set IMAGE_WIDTH and IMAGE_HEIGHT lower or raise cma in config.txt"


@pytest.fixture
def run_full_size(run_snap):
    """run_snap at the sensor's full resolution (the suite's default is 640x480)."""

    def run(**env: str):
        return run_snap(**{"IMAGE_WIDTH": "", "IMAGE_HEIGHT": "", **env})

    return run


@pytest.mark.parametrize("version", ["0.3.30", "0.3.38"])
def test_full_resolution_camera_module_3_fits_64_mb_of_cma_on_a_pi_zero_to_4(
    run_full_size, redis_db, version
):
    result = run_full_size(
        FAKE_PICAMERA2_VERSION=version, FAKE_CAMERA_CMA_MB="64", FAKE_CAMERA_PIPELINE="vc4"
    )

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("image:*")


def test_full_resolution_hq_camera_fits_64_mb_of_cma_on_a_pi_zero_to_4(run_full_size, redis_db):
    result = run_full_size(FAKE_CAMERA_MODEL="imx477", FAKE_CAMERA_CMA_MB="64")

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("image:*")


@pytest.mark.parametrize("version", ["0.3.12", "0.3.38"])
def test_camera_memory_nothing_fits_in_exits_69_with_the_size_hint(
    run_full_size, redis_db, camera_dir, version
):
    result = run_full_size(FAKE_PICAMERA2_VERSION=version, FAKE_CAMERA_CMA_MB="8")

    assert result.returncode == 69
    assert result.stderr.count("\n") == 1
    assert "not enough camera memory for full resolution" in result.stderr
    assert result.stderr.endswith(HINT + "\n")
    assert "configure: out of memory" in camera_events(camera_dir)
    assert redis_db.keys("image:*") == []


def test_libcamera_buffers_that_do_not_fit_at_start_exit_69_with_the_size_hint(
    run_full_size, camera_dir
):
    # 0.3.19 encodes JPEGs from BGR888 and its libcamera keeps 2 raw frames of its own beside
    # the raw stream: 34 + 14 MiB fit at configure(), the 28 MiB more at start() do not.
    result = run_full_size(FAKE_PICAMERA2_VERSION="0.3.19", FAKE_CAMERA_CMA_MB="56")

    assert result.returncode == 69
    assert "Cannot allocate memory" in result.stderr
    assert result.stderr.endswith(HINT + "\n")
    assert "start: out of memory" in camera_events(camera_dir)


def test_a_smaller_image_size_fits_where_full_resolution_does_not(run_snap, redis_db):
    result = run_snap(
        FAKE_PICAMERA2_VERSION="0.3.19",
        FAKE_CAMERA_CMA_MB="56",
        IMAGE_WIDTH="2304",
        IMAGE_HEIGHT="1296",
    )

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("image:*")
