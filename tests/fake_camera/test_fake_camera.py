"""The fake camera in tests/fake behaves as picamera2 does, and each FAKE_CAMERA_* knob works."""

import concurrent.futures
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import FAKE_CAMERA, camera_events
from PIL import Image, ImageFile

FAKE = str(FAKE_CAMERA)
SMALL = {"size": (640, 480)}
RED_CORNER = {  # (hflip, vflip) -> the corner where the red block of the test pattern lands
    (False, False): "top-left",
    (True, False): "top-right",
    (False, True): "bottom-left",
    (True, True): "bottom-right",
}


def started(fake, main=SMALL, **still):
    cam = fake.Picamera2()
    cam.configure(cam.create_still_configuration(main=dict(main), **still))
    cam.start()
    return cam


def capture_jpeg(cam):
    buffer = io.BytesIO()
    cam.capture_file(buffer, format="jpeg", wait=5)
    return Image.open(io.BytesIO(buffer.getvalue()))


def red_corner(image):
    width, height = image.size
    corners = {
        "top-left": (width // 8, height // 8),
        "top-right": (width - width // 8, height // 8),
        "bottom-left": (width // 8, height - height // 8),
        "bottom-right": (width - width // 8, height - height // 8),
    }
    red = [name for name, xy in corners.items() if image.getpixel(xy)[0] > 180]
    assert len(red) == 1, red
    return red[0]


def pillow_quantization(quality):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).quantization


def fake_env(**variables):
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": FAKE, **variables}


def popen_python(code, **variables):
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=fake_env(**variables),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# Cameras found and opened


def test_global_camera_info_lists_one_camera_module_3_by_default(fake):
    assert fake.Picamera2.global_camera_info() == [
        {
            "Model": "imx708",
            "Location": 2,
            "Rotation": 180,
            "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a",
            "Num": 0,
        }
    ]


@pytest.mark.parametrize("fault", ["absent", "absent-old"])
def test_global_camera_info_is_empty_without_camera(fake, monkeypatch, fault):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", fault)
    assert fake.Picamera2.global_camera_info() == []


def test_camera_count_reports_cameras_with_distinct_ids_and_numbers(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_COUNT", "2")
    cameras = fake.Picamera2.global_camera_info()
    assert sorted(cam["Num"] for cam in cameras) == [0, 1]
    assert len({cam["Id"] for cam in cameras}) == 2


def test_absent_camera_raises_the_runtime_error_of_picamera2_0_3_37(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "absent")
    with pytest.raises(RuntimeError, match=r"No camera number 0 found - use \"rpicam-hello"):
        fake.Picamera2()


def test_absent_old_camera_raises_index_error(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "absent-old")
    with pytest.raises(IndexError, match="list index out of range"):
        fake.Picamera2()


def test_camera_number_beyond_those_found_raises(fake):
    with pytest.raises(RuntimeError, match="No camera number 1 found"):
        fake.Picamera2(1)


def test_unknown_fault_name_is_rejected(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "hang-captrue")
    with pytest.raises(ValueError, match="hang-captrue"):
        fake.Picamera2()


@pytest.mark.parametrize(
    "model, resolution",
    [("imx708", (4608, 2592)), ("imx219", (3280, 2464)), ("uvc", (1280, 720))],
)
def test_model_sets_sensor_resolution_and_pixel_array(fake, monkeypatch, model, resolution):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", model)
    cam = fake.Picamera2()
    assert cam.sensor_resolution == resolution
    assert cam.camera_properties["PixelArraySize"] == resolution
    assert cam.camera_properties["Model"] == model


@pytest.mark.parametrize("model, autofocus", [("imx708", True), ("imx219", False), ("uvc", False)])
def test_only_camera_module_3_advertises_autofocus(fake, monkeypatch, model, autofocus):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", model)
    assert ("AfMode" in fake.Picamera2().camera_controls) is autofocus


def test_camera_controls_are_min_max_default_triples(fake):
    controls = fake.Picamera2().camera_controls
    assert all(isinstance(limits, tuple) and len(limits) == 3 for limits in controls.values())


def test_options_start_empty_and_quality_defaults_to_90_when_encoding(fake):
    cam = started(fake)
    assert cam.options == {}
    assert capture_jpeg(cam).quantization == pillow_quantization(90)


# Busy: one process at a time

HOLD_CAMERA = "import sys, picamera2; picamera2.Picamera2(); print('held', flush=True); input()"


def test_camera_held_by_another_process_is_busy_like_libcamera(fake):
    holder = popen_python(HOLD_CAMERA, FAKE_CAMERA_DIR=str(fake.dir))
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RuntimeError, match="Camera __init__ sequence did not complete.") as e:
            fake.Picamera2()
    finally:
        holder.communicate("\n", timeout=10)
    assert str(e.value.__cause__) == "Failed to acquire camera: Device or resource busy"
    assert "busy 0" in fake.events()


def test_camera_is_free_again_when_the_other_process_exits(fake):
    holder = popen_python(HOLD_CAMERA, FAKE_CAMERA_DIR=str(fake.dir))
    assert holder.stdout.readline() == "held\n"
    holder.communicate("\n", timeout=10)
    fake.Picamera2().close()


def test_camera_is_free_again_after_close(fake):
    fake.Picamera2().close()
    fake.Picamera2().close()


def test_without_camera_dir_there_is_no_lock_and_no_log(fake, monkeypatch):
    monkeypatch.delenv("FAKE_CAMERA_DIR")
    first = fake.Picamera2()
    second = fake.Picamera2()
    first.close()
    second.close()
    assert list(fake.dir.iterdir()) == []


# Configuration


def test_still_configuration_defaults_to_bgr888_at_sensor_resolution(fake):
    config = fake.Picamera2().create_still_configuration()
    assert config["main"]["format"] == "BGR888"
    assert config["main"]["size"] == (4608, 2592)
    assert config["buffer_count"] == 1
    assert config["transform"] == fake.libcamera.Transform()


def test_usb_camera_still_configuration_has_no_raw_stream(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", "uvc")
    assert fake.Picamera2().create_still_configuration()["raw"] is None


def test_configure_while_started_raises(fake):
    cam = started(fake)
    with pytest.raises(RuntimeError, match="Camera must be stopped before configuring"):
        cam.configure(cam.create_still_configuration())


def test_autofocus_control_in_configuration_of_camera_without_autofocus_raises(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", "imx219")
    cam = fake.Picamera2()
    config = cam.create_still_configuration(controls={"AfMode": 1})
    with pytest.raises(RuntimeError, match="^Control AfMode is not advertised by libcamera$"):
        cam.configure(config)


def test_set_controls_with_unadvertised_control_raises(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", "uvc")
    with pytest.raises(RuntimeError, match="Control AfMode is not advertised by libcamera"):
        fake.Picamera2().set_controls({"AfMode": 1})


def test_dma_fail_makes_configure_raise_enomem(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "dma-fail")
    cam = fake.Picamera2()
    with pytest.raises(OSError, match="Cannot allocate memory") as e:
        cam.configure(cam.create_still_configuration())
    assert e.value.errno == 12


def test_before_0_3_27_refuses_a_jpeg_from_a_yuv420_stream(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "before-0.3.27")
    cam = started(fake, main={"format": "YUV420", "size": (64, 48)})
    with pytest.raises(RuntimeError, match="YUV420 not supported"):
        cam.capture_file(io.BytesIO(), format="jpeg")


def test_before_0_3_27_has_no_faster_jpeg_flag():
    code = "import picamera2; print(hasattr(picamera2.CompletedRequest, 'FASTER_JPEG'))"
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=fake_env(FAKE_CAMERA_FAULTS="before-0.3.27"),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.stdout == "False\n", run.stderr


def test_start_without_configuration_uses_the_640x480_preview(fake):
    cam = fake.Picamera2()
    cam.start()
    assert capture_jpeg(cam).size == (640, 480)


def test_odd_sizes_are_rounded_down_to_even(fake):
    config = fake.Picamera2().create_still_configuration(main={"size": (641, 481)})
    assert config["main"]["size"] == (640, 480)


# Metadata


def test_ae_state_converges_on_the_fourth_frame(fake):
    cam = started(fake)
    assert [cam.capture_metadata(wait=1)["AeState"] for _ in range(5)] == [1, 1, 1, 2, 2]


def test_never_settle_keeps_ae_state_searching(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "never-settle")
    cam = started(fake)
    assert {cam.capture_metadata(wait=1)["AeState"] for _ in range(10)} == {1}


def test_ae_locked_replaces_ae_state_and_turns_true(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "ae-locked")
    cam = started(fake)
    frames = [cam.capture_metadata(wait=1) for _ in range(5)]
    assert [md["AeLocked"] for md in frames] == [False, False, False, True, True]
    assert not any("AeState" in md for md in frames)


def test_metadata_has_libcamera_types(fake):
    md = started(fake).capture_metadata(wait=1)
    assert isinstance(md["Lux"], float)
    assert isinstance(md["ExposureTime"], int)
    assert isinstance(md["AnalogueGain"], float) and isinstance(md["DigitalGain"], float)
    assert isinstance(md["ColourTemperature"], int)
    assert [type(g) for g in md["ColourGains"]] == [float, float]
    assert [type(c) for c in md["ColourCorrectionMatrix"]] == [float] * 9
    assert [type(b) for b in md["SensorBlackLevels"]] == [int] * 4
    assert isinstance(md["ScalerCrop"], tuple) and len(md["ScalerCrop"]) == 4
    assert isinstance(md["FrameDuration"], int) and isinstance(md["SensorTimestamp"], int)
    assert isinstance(md["FocusFoM"], int)


def test_no_lux_leaves_lux_out(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "no-lux")
    assert "Lux" not in started(fake).capture_metadata(wait=1)


def test_fake_camera_lux_sets_the_scene_brightness(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_LUX", "3")
    cam = started(fake)
    assert {cam.capture_metadata(wait=1)["Lux"] for _ in range(3)} == {3.0, 3.5, 4.0}


def test_bad_fake_camera_lux_is_rejected(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_LUX", "-1")
    with pytest.raises(ValueError, match="FAKE_CAMERA_LUX"):
        fake.Picamera2()


def test_usb_camera_metadata_has_no_lux(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", "uvc")
    assert "Lux" not in started(fake).capture_metadata(wait=1)


@pytest.mark.parametrize("model, autofocus", [("imx708", True), ("imx219", False)])
def test_autofocus_metadata_only_on_autofocus_cameras(fake, monkeypatch, model, autofocus):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", model)
    md = started(fake).capture_metadata(wait=1)
    assert ("AfState" in md, "LensPosition" in md) == (autofocus, autofocus)


def test_sensor_timestamps_increase_frame_by_frame(fake):
    cam = started(fake)
    first, second = (cam.capture_metadata(wait=1)["SensorTimestamp"] for _ in range(2))
    assert second > first


# Autofocus


def test_autofocus_cycle_focuses(fake):
    cam = started(fake)
    assert cam.autofocus_cycle(wait=1) is True
    assert cam.capture_metadata(wait=1)["AfState"] == fake.libcamera.controls.AfStateEnum.Focused


def test_af_fail_makes_autofocus_cycle_return_false(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "af-fail")
    assert started(fake).autofocus_cycle(wait=1) is False


def test_autofocus_cycle_without_autofocus_raises_at_once(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_MODEL", "imx219")
    with pytest.raises(RuntimeError, match="Control AfMode is not advertised by libcamera"):
        started(fake).autofocus_cycle(wait=1)


def test_af_hang_raises_the_timeout_error_after_the_wait(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "af-hang")
    cam = started(fake)
    began = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        cam.autofocus_cycle(wait=0.3)
    assert 0.3 <= time.monotonic() - began < 2


def test_continuous_autofocus_reports_focused_after_scanning(fake):
    cam = started(fake, controls={"AfMode": fake.libcamera.controls.AfModeEnum.Continuous})
    states = [cam.capture_metadata(wait=1)["AfState"] for _ in range(4)]
    assert states == [1, 2, 2, 2]


# Waiting, hanging, cancelling


def test_picamera2_timeout_error_is_the_concurrent_futures_one(fake):
    assert fake.picamera2.TimeoutError is concurrent.futures.TimeoutError


def test_hang_capture_raises_the_timeout_error_after_the_wait(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "hang-capture")
    cam = started(fake)
    began = time.monotonic()
    with pytest.raises(fake.picamera2.TimeoutError):
        cam.capture_file(io.BytesIO(), format="jpeg", wait=0.3)
    assert 0.3 <= time.monotonic() - began < 2


def test_wait_false_returns_a_job_that_wait_collects(fake):
    cam = started(fake)
    job = cam.capture_metadata(wait=False)
    assert "AeState" in cam.wait(job, 1)


def test_wait_zero_returns_a_job_too(fake):
    assert "AeState" in started(fake).capture_metadata(wait=0).get_result(1)


def test_signal_function_gets_the_finished_job(fake):
    finished = []
    job = started(fake).capture_metadata(signal_function=finished.append)
    assert finished == [job]


def test_captures_queue_behind_a_hung_job(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "hang-capture")
    cam = started(fake)
    cam.capture_file(io.BytesIO(), format="jpeg", wait=False)
    with pytest.raises(concurrent.futures.TimeoutError):
        cam.capture_metadata(wait=0.1)


def test_cancel_all_and_flush_cancels_the_hung_job(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "hang-capture")
    cam = started(fake)
    job = cam.capture_file(io.BytesIO(), format="jpeg", wait=False)
    cam.cancel_all_and_flush()
    with pytest.raises(concurrent.futures.CancelledError):
        cam.wait(job, 1)
    assert "AeState" in cam.capture_metadata(wait=1)


def test_close_after_a_timed_out_capture_returns(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "hang-capture")
    cam = started(fake)
    cam.capture_file(io.BytesIO(), format="jpeg", wait=False)
    cam.close()
    assert fake.events()[-1] == "close"


def test_captures_without_an_event_loop_never_complete(fake):
    cam = fake.Picamera2()
    cam.configure(cam.create_still_configuration(main=dict(SMALL)))
    cam.start(show_preview=None)
    with pytest.raises(concurrent.futures.TimeoutError):
        cam.capture_metadata(wait=0.1)


ALARM_RAISES = """
import io, signal, sys
import picamera2
from picamera2 import Picamera2

def alarm(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGALRM, alarm)
cam = Picamera2()
cam.configure(cam.create_still_configuration(main={"size": (64, 48)}))
"""


def test_stop_after_a_timed_out_capture_blocks_until_cancel_all_and_flush(fake):
    code = ALARM_RAISES + (
        "cam.start()\n"
        "try:\n"
        "    cam.capture_file(io.BytesIO(), format='jpeg', wait=0.1)\n"
        "except picamera2.TimeoutError:\n"
        "    signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
        "    try:\n"
        "        cam.stop()\n"
        "    except KeyboardInterrupt:\n"
        "        print('stop blocked')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=fake_env(FAKE_CAMERA_FAULTS="hang-capture"),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.stdout == "stop blocked\n", run.stderr


def test_stop_after_cancel_all_and_flush_returns(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "hang-capture")
    cam = started(fake)
    with pytest.raises(concurrent.futures.TimeoutError):
        cam.capture_file(io.BytesIO(), format="jpeg", wait=0.1)
    cam.cancel_all_and_flush()
    cam.stop()
    assert cam.started is False


def assert_interrupted_after(code: str, seconds: float, **variables) -> None:
    """The code, run with the fake, prints "interrupted", and not before `seconds`."""
    began = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=fake_env(**variables),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.stdout == "interrupted\n", run.stderr
    assert time.monotonic() - began >= seconds


def test_hang_start_blocks_until_a_signal_handler_raises(fake):
    code = ALARM_RAISES + (
        "signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
        "try:\n    cam.start()\nexcept KeyboardInterrupt:\n    print('interrupted')\n"
    )
    assert_interrupted_after(code, 0.3, FAKE_CAMERA_FAULTS="hang-start")


def test_hang_close_blocks_until_a_signal_handler_raises(fake):
    code = ALARM_RAISES + (
        "signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
        "try:\n    cam.close()\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
        "import os; os._exit(0)  # a second close(), at exit, would hang as well\n"
    )
    assert_interrupted_after(code, 0.3, FAKE_CAMERA_FAULTS="hang-close")


HARD_HANG_STEPS = {
    "hang-capture": "cam.start(); cam.capture_file(io.BytesIO(), format='jpeg', wait=0.2)",
    "af-hang": "cam.start(); cam.autofocus_cycle(wait=0.2)",
    "hang-start": "cam.start()",
}


def start_hard_hang(fault, before=""):
    """A process about to hang hard in the step that `fault` hangs, under a stream of SIGALRMs
    whose handler says it ran and raises."""
    code = ALARM_RAISES + (
        "def alarm(signum, frame):\n"
        "    print('handler ran', flush=True)\n"
        "    raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGALRM, alarm)\n"
        f"{before}print('hanging', flush=True)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.05, 0.01)\n"
        f"try:\n    {HARD_HANG_STEPS[fault]}\n"
        "except BaseException as e:\n    print('escaped', type(e).__name__, flush=True)\n"
    )
    process = popen_python(code, FAKE_CAMERA_FAULTS=f"{fault},hang-hard")
    assert process.stdout.readline() == "hanging\n", process.stderr.read()
    return process


@pytest.mark.parametrize("fault", sorted(HARD_HANG_STEPS))
def test_hard_hang_ignores_timeouts_and_signal_handlers(fault):
    process = start_hard_hang(fault)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)
    finally:
        process.kill()
        output, _ = process.communicate()
    assert output == ""


def test_hard_hang_ends_with_os_exit_from_another_thread():
    process = start_hard_hang(
        "hang-capture",
        before="import os, threading\nthreading.Timer(0.3, os._exit, (7,)).start()\n",
    )
    assert process.wait(timeout=10) == 7
    process.communicate()


def test_hard_hang_dies_of_sigterm_without_a_handler():
    process = start_hard_hang("hang-capture")
    time.sleep(0.3)
    process.terminate()
    assert process.wait(timeout=10) == -signal.SIGTERM
    process.communicate()


# Frame timing


def frames_read_within(cam, seconds):
    """How many frames a loop of capture_metadata() gets in `seconds` from now."""
    began = time.monotonic()
    frames = 0
    while time.monotonic() - began < seconds:
        cam.capture_metadata(wait=1)
        frames += 1
    return frames


def test_frames_arrive_at_30_per_second_by_default(fake):
    cam = started(fake)
    assert 13 <= frames_read_within(cam, 0.5) <= 17


def test_fake_camera_fps_sets_the_frame_rate(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FPS", "10")
    cam = started(fake)
    assert 4 <= frames_read_within(cam, 0.5) <= 6


def test_sensor_timestamps_are_whole_frames_apart(fake):
    cam = started(fake)
    first, second = (cam.capture_metadata(wait=1)["SensorTimestamp"] for _ in range(2))
    frames = (second - first) / (1e9 / 30)  # one, or more if the second call came late
    assert round(frames) >= 1
    assert frames == pytest.approx(round(frames), abs=1e-4)


def test_frame_duration_follows_the_frame_rate(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FPS", "20")
    assert started(fake).capture_metadata(wait=1)["FrameDuration"] == 50000


def test_a_late_caller_gets_the_next_frame_not_the_ones_it_missed(fake):
    cam = started(fake)
    first = cam.capture_metadata(wait=1)["SensorTimestamp"]
    time.sleep(0.3)
    called = time.monotonic_ns()
    frame = cam.capture_metadata(wait=1)["SensorTimestamp"]
    assert called < frame <= called + 1e9 / 30 + 1e6
    assert frame - first > 0.3e9


def test_start_takes_fake_camera_start_seconds(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_START_SECONDS", "0.3")
    cam = fake.Picamera2()
    cam.configure(cam.create_still_configuration(main=dict(SMALL)))
    began = time.monotonic()
    cam.start()
    assert 0.3 <= time.monotonic() - began < 1


def test_start_takes_no_time_by_default(fake):
    began = time.monotonic()
    started(fake)
    assert time.monotonic() - began < 0.2


def test_first_frame_comes_one_frame_after_start_returns(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_START_SECONDS", "0.3")
    cam = started(fake)
    returned = time.monotonic_ns()
    frame = cam.capture_metadata(wait=1)["SensorTimestamp"]
    assert returned < frame <= returned + 1e9 / 30


def test_ae_state_converges_on_fake_camera_settled_frame(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_SETTLED_FRAME", "6")
    cam = started(fake)
    assert [cam.capture_metadata(wait=1)["AeState"] for _ in range(7)] == [1] * 5 + [2, 2]


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FAKE_CAMERA_FPS", "0"),
        ("FAKE_CAMERA_START_SECONDS", "soon"),
        ("FAKE_CAMERA_SETTLED_FRAME", "4.5"),
    ],
)
def test_bad_timing_values_are_rejected(fake, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        fake.Picamera2()


def test_wait_shorter_than_the_next_frame_raises_the_timeout_error_after_the_wait(
    fake, monkeypatch
):
    monkeypatch.setenv("FAKE_CAMERA_FPS", "1")
    cam = started(fake)
    began = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        cam.capture_metadata(wait=0.2)
    assert 0.2 <= time.monotonic() - began < 0.9


def test_autofocus_cycle_takes_two_frames(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FPS", "4")
    cam = started(fake)
    cam.capture_metadata(wait=1)  # just after a frame: the next two come in 0.25 and 0.5 s
    with pytest.raises(concurrent.futures.TimeoutError):
        cam.autofocus_cycle(wait=0.4)
    cam.capture_metadata(wait=1)
    assert cam.autofocus_cycle(wait=0.6) is True


@pytest.mark.parametrize(
    "variable, value, step",
    [
        ("FAKE_CAMERA_START_SECONDS", "60", "cam.start()"),
        ("FAKE_CAMERA_FPS", "0.02", "cam.start(); cam.capture_metadata()"),  # every 50 s
    ],
)
def test_waiting_for_the_camera_ends_when_a_signal_handler_raises(variable, value, step):
    code = ALARM_RAISES + (
        "signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
        f"try:\n    {step}\nexcept KeyboardInterrupt:\n    print('interrupted')\n"
    )
    began = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=fake_env(**{variable: value}),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.stdout == "interrupted\n", run.stderr
    assert 0.3 <= time.monotonic() - began < 10


def test_snap_waiting_3_s_for_exposure_that_never_settles_logs_a_few_hundred_events_at_most(
    run_snap, redis_db, camera_dir
):
    result = run_snap(SETTLE_TIMEOUT="3", FAKE_CAMERA_FAULTS="never-settle")

    assert result.returncode == 0, result.stderr
    events = camera_events(camera_dir)
    assert 60 <= events.count("capture_metadata") <= 100  # about 30 frames a second
    assert len(events) <= 200


# The JPEG


def test_jpeg_has_the_configured_size(fake):
    image = capture_jpeg(started(fake, main={"format": "YUV420", "size": (800, 600)}))
    assert (image.format, image.size) == ("JPEG", (800, 600))


def test_jpeg_is_encoded_at_options_quality(fake):
    cam = started(fake)
    cam.options["quality"] = 40
    assert capture_jpeg(cam).quantization == pillow_quantization(40)


def test_lower_quality_gives_a_much_smaller_jpeg(fake):
    cam = started(fake)
    sizes = {}
    for quality in (10, 95):
        cam.options["quality"] = quality
        buffer = io.BytesIO()
        cam.capture_file(buffer, format="jpeg", wait=1)
        sizes[quality] = len(buffer.getvalue())
    assert sizes[10] < sizes[95] / 2


@pytest.mark.parametrize("flips, corner", RED_CORNER.items())
def test_flips_move_the_red_corner_of_the_pattern(fake, flips, corner):
    hflip, vflip = flips
    transform = fake.libcamera.Transform(hflip=hflip, vflip=vflip)
    assert red_corner(capture_jpeg(started(fake, transform=transform))) == corner


def test_full_resolution_jpeg_takes_well_under_a_second(fake):
    cam = started(fake, main={})
    began = time.monotonic()
    image = capture_jpeg(cam)
    assert time.monotonic() - began < 1
    assert image.size == (4608, 2592)


def test_capture_file_returns_the_metadata_of_its_frame(fake):
    cam = started(fake)
    before = cam.capture_metadata(wait=1)["SensorTimestamp"]
    metadata = cam.capture_file(io.BytesIO(), format="jpeg", wait=1)
    assert metadata["SensorTimestamp"] > before and "ExposureTime" in metadata


def test_capture_file_to_bytesio_without_format_raises(fake):
    with pytest.raises(RuntimeError, match="Cannot determine format to save"):
        started(fake).capture_file(io.BytesIO(), wait=1)


def test_capture_file_writes_a_jpeg_path(fake, tmp_path):
    started(fake).capture_file(str(tmp_path / "shot.jpg"), wait=1)
    assert Image.open(tmp_path / "shot.jpg").format == "JPEG"


def test_jpeg_exif_names_the_camera_like_picamera2(fake):
    exif = capture_jpeg(started(fake)).getexif()
    assert (exif[0x010F], exif[0x0110]) == ("Raspberry Pi", "/base/soc/i2c0mux/i2c@1/imx708@1a")


def test_fake_camera_jpeg_bytes_are_written_as_they_are(fake, monkeypatch, tmp_path):
    prepared = tmp_path / "prepared.jpg"
    prepared.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    monkeypatch.setenv("FAKE_CAMERA_JPEG", str(prepared))
    buffer = io.BytesIO()
    started(fake).capture_file(buffer, format="jpeg", wait=1)
    assert buffer.getvalue() == prepared.read_bytes()


class WritesSeen(io.BytesIO):
    """A BytesIO that remembers each write, as picamera2 makes them."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        return super().write(data)


def test_jpeg_from_0_3_26_is_spliced_with_its_exif_in_three_writes(fake):
    seen = WritesSeen()
    started(fake).capture_file(seen, format="jpeg", wait=5)
    head, exif, rest = seen.writes
    assert head[:4] == b"\xff\xd8\xff\xe1" and int.from_bytes(head[4:6], "big") == len(exif) + 2
    assert exif.startswith(b"Exif\x00\x00") and rest.startswith(b"\xff")
    assert Image.open(io.BytesIO(seen.getvalue())).getexif()[0x0131] == "Picamera2"


def test_jpeg_before_0_3_26_is_written_in_pillows_blocks(fake, monkeypatch):
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "before-0.3.27")
    seen = WritesSeen()
    started(fake, main={"size": (1920, 1080)}).capture_file(seen, format="jpeg", wait=5)
    assert len(seen.writes) > 1
    assert Image.open(io.BytesIO(seen.getvalue())).getexif()[0x0131] == "Picamera2"


def prepared_jpeg(monkeypatch, path, data):
    path.write_bytes(data)
    monkeypatch.setenv("FAKE_CAMERA_JPEG", str(path))
    return data


def test_fake_camera_jpeg_bytes_before_0_3_26_come_in_pillows_blocks(fake, monkeypatch, tmp_path):
    written = prepared_jpeg(monkeypatch, tmp_path / "shot.jpg", os.urandom(200_000))
    monkeypatch.setenv("FAKE_CAMERA_FAULTS", "before-0.3.27")
    seen = WritesSeen()
    started(fake).capture_file(seen, format="jpeg", wait=5)
    assert len(seen.writes) > 1 and max(map(len, seen.writes)) <= ImageFile.MAXBLOCK
    assert seen.getvalue() == written


def test_fake_camera_jpeg_bytes_of_a_usb_camera_come_in_pillows_blocks(fake, monkeypatch, tmp_path):
    written = prepared_jpeg(monkeypatch, tmp_path / "shot.jpg", os.urandom(200_000))
    monkeypatch.setenv("FAKE_CAMERA_MODEL", "uvc")
    seen = WritesSeen()
    started(fake, main={"size": (640, 480)}).capture_file(seen, format="jpeg", wait=5)
    assert len(seen.writes) > 1 and seen.getvalue() == written


def test_fake_camera_jpeg_bytes_with_an_exif_segment_are_written_as_spliced(
    fake, monkeypatch, tmp_path
):
    exif = b"Exif\x00\x00" + os.urandom(100)
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big")
    written = prepared_jpeg(
        monkeypatch, tmp_path / "shot.jpg", b"\xff\xd8" + app1 + exif + b"\xff\xe0 rest \xff\xd9"
    )
    seen = WritesSeen()
    started(fake).capture_file(seen, format="jpeg", wait=5)
    assert seen.writes == [b"\xff\xd8" + app1, exif, b"\xff\xe0 rest \xff\xd9"]
    assert seen.getvalue() == written


def test_fake_camera_jpeg_that_cannot_be_read_raises_from_capture_file(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_CAMERA_JPEG", str(tmp_path / "missing.jpg"))
    with pytest.raises(FileNotFoundError):
        started(fake).capture_file(io.BytesIO(), format="jpeg", wait=5)


# The log of calls


def test_events_log_records_each_call_in_order(fake):
    cam = started(fake)
    cam.capture_file(io.BytesIO(), format="jpeg", wait=1)
    cam.close()
    assert fake.events() == ["open 0", "configure", "start", "capture_file", "close"]


def test_close_twice_closes_once(fake):
    cam = fake.Picamera2()
    cam.close()
    cam.close()
    assert fake.events().count("close") == 1


def test_context_manager_closes_on_exception(fake):
    with pytest.raises(ZeroDivisionError):
        with fake.Picamera2():
            raise ZeroDivisionError
    assert fake.events()[-1] == "close"


def test_libcamera_log_levels_are_recorded_when_libcamera_loads(tmp_path):
    code = "import os; import picamera2; os.environ['LIBCAMERA_LOG_LEVELS'] = 'late'"
    env = fake_env(FAKE_CAMERA_DIR=str(tmp_path), LIBCAMERA_LOG_LEVELS="*:ERROR")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=20)
    assert (tmp_path / "events.log").read_text() == "libcamera log levels *:ERROR\n"


# libcamera


def test_transform_compares_and_hashes_by_value(fake):
    Transform = fake.libcamera.Transform
    assert Transform(hflip=1) == Transform(hflip=True) != Transform()
    assert len({Transform(vflip=1), Transform(vflip=True)}) == 1


def test_transform_rotation_180_is_both_flips(fake):
    rotated = fake.libcamera.Transform(rotation=180)
    assert (rotated.hflip, rotated.vflip, rotated.transpose) == (True, True, False)


def test_transform_prints_like_the_libcamera_binding(fake):
    assert repr(fake.libcamera.Transform(hflip=1)) == "<libcamera.Transform 'hflip'>"


def test_af_enums_compare_equal_to_metadata_ints(fake):
    controls = fake.libcamera.controls
    assert (controls.AfModeEnum.Continuous, controls.AfStateEnum.Failed) == (2, 3)
    assert controls.AfTriggerEnum.Start == 0


# Controls: a Camera Module 3's, reaching the frames


def test_enum_controls_are_ints_named_as_the_bindings_name_them(fake):
    enums = fake.libcamera.controls

    assert enums.AwbModeEnum.Daylight == 5
    assert enums.AeExposureModeEnum.Long == 2
    assert enums.AeMeteringModeEnum.Spot == 1
    assert enums.draft.NoiseReductionModeEnum.HighQuality == 2


def test_control_ranges_become_the_sensor_modes_once_configured(fake):
    cam = fake.Picamera2()
    before = cam.camera_controls["ExposureTime"]
    cam.configure(cam.create_still_configuration())

    assert before == (1, 66666, 20000)
    assert cam.camera_controls["ExposureTime"] == (26, 220416802, 20000)
    assert cam.camera_controls["FrameDurationLimits"][:2] == (69669, 220535845)


def test_older_libcamera_has_no_exposure_time_mode(fake, monkeypatch):
    monkeypatch.setattr(fake.picamera2, "_V", (0, 3, 19))
    controls = fake.Picamera2().camera_controls

    assert "ExposureTimeMode" not in controls
    assert "AeEnable" in controls


def test_controls_in_the_configuration_reach_the_first_frame(fake):
    controls = {"ExposureTime": 10000, "AnalogueGain": 2.0, "ColourGains": (1.8, 1.6)}
    metadata = started(fake, controls=controls).capture_metadata(wait=1)

    assert (metadata["ExposureTime"], metadata["AnalogueGain"]) == (10000, 2.0)
    assert metadata["ColourGains"] == (1.8, 1.6)


def test_lens_position_moves_the_lens_in_manual_focus(fake):
    metadata = started(fake, controls={"LensPosition": 2.0}).capture_metadata(wait=1)

    assert metadata["LensPosition"] == 2.0


def test_lens_position_is_ignored_in_auto_focus(fake):
    auto = fake.libcamera.controls.AfModeEnum.Auto
    cam = started(fake, controls={"AfMode": auto, "LensPosition": 2.0})

    assert cam.capture_metadata(wait=1)["LensPosition"] == 1.0


def test_a_long_exposure_lengthens_the_frame(fake):
    cam = started(fake, controls={"ExposureTime": 300000})
    first, second = (cam.capture_metadata(wait=2) for _ in range(2))

    assert first["FrameDuration"] == 300000
    assert second["SensorTimestamp"] - first["SensorTimestamp"] == pytest.approx(3e8, abs=1e3)


def test_frame_duration_limits_cut_a_longer_exposure(fake):
    limits = {"ExposureTime": 300000, "FrameDurationLimits": (100000, 200000)}
    metadata = started(fake, controls=limits).capture_metadata(wait=2)

    assert (metadata["ExposureTime"], metadata["FrameDuration"]) == (200000, 200000)


def test_start_records_the_controls_the_first_frame_gets(fake):
    started(fake, controls={"AwbMode": fake.libcamera.controls.AwbModeEnum.Daylight})

    started_with = json.loads((fake.dir / "started-with.json").read_text())
    assert started_with["AwbMode"] == 5
    assert started_with["FrameDurationLimits"] == [100, 1000000000]
