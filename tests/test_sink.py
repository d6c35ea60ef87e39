"""The JPEG sink keeps what picamera2 writes without copying it."""

import io
import os
import tracemalloc

from snapcam.camera import capture
from snapcam.guard import Guard
from snapcam.sink import JpegSink


def test_sink_is_a_bytesio_to_picamera2():
    assert isinstance(JpegSink(), io.BytesIO)


def test_jpeg_written_at_once_is_kept_without_a_copy():
    sink = JpegSink()
    jpeg = os.urandom(1000)
    sink.write(jpeg)
    assert sink.jpeg().obj is jpeg


def test_jpeg_written_in_parts_is_joined_in_order():
    sink = JpegSink()
    for part in (b"\xff\xd8", b"Exif", b"rest\xff\xd9"):
        sink.write(part)
    assert bytes(sink.jpeg()) == b"\xff\xd8Exifrest\xff\xd9"


def test_lines_written_at_once_are_kept_in_order():
    sink = JpegSink()
    sink.write(b"\xff\xd8")
    sink.writelines([b"Exif", b"rest\xff\xd9"])
    assert bytes(sink.jpeg()) == b"\xff\xd8Exifrest\xff\xd9"


def test_each_write_is_told_before_it_is_kept():
    told = []
    sink = JpegSink(lambda: told.append(len(sink.parts)))
    sink.write(b"\xff\xd8")
    sink.write(b"\xff\xd9")
    assert told == [0, 1]


def test_buffer_its_writer_may_reuse_is_copied():
    sink = JpegSink()
    reused = bytearray(b"first")
    assert sink.write(memoryview(reused)) == 5
    reused[:] = b"later"
    assert bytes(sink.jpeg()) == b"first"


def capture_peak(fake, monkeypatch, path, written: bytes) -> int:
    """The most memory Python held at once while capture() took the prepared JPEG."""
    path.write_bytes(written)
    monkeypatch.setenv("FAKE_CAMERA_JPEG", str(path))
    cam = fake.Picamera2()
    cam.configure(cam.create_still_configuration(main={"size": (64, 64)}))
    cam.start()
    tracemalloc.start()
    try:
        shot = capture(cam, Guard(), 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shot.jpeg == written
    return peak


def test_capture_holds_a_jpeg_written_in_one_go_once(fake, monkeypatch, tmp_path):
    size = 4_000_000
    peak = capture_peak(fake, monkeypatch, tmp_path / "shot.jpg", os.urandom(size))
    assert peak < 1.5 * size  # a BytesIO would hold it twice over


def test_capture_holds_a_jpeg_spliced_with_its_exif_twice_at_most(fake, monkeypatch, tmp_path):
    size = 4_000_000
    exif = b"Exif\x00\x00" + os.urandom(200)
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big")
    written = b"\xff\xd8" + app1 + exif + os.urandom(size)
    peak = capture_peak(fake, monkeypatch, tmp_path / "shot.jpg", written)
    assert peak < 2.5 * size  # picamera2's JPEG and its slice; a BytesIO would add a third
