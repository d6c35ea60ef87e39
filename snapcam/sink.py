"""Where picamera2 writes a shot's JPEG: the bytes it writes are kept, not copied.

picamera2 writes a JPEG to a file object it is handed, here an io.BytesIO (from 0.3.26 it
must be one: request.py save() checks with isinstance), and a BytesIO copies each write
into a buffer of its own: for a moment the picture is in memory twice over, or three times.
From picamera2 0.3.26, the JPEG of a camera module comes from simplejpeg as one bytes
object, written at once, or in three writes that splice the EXIF segment in after its first
two bytes (a slice of it, itself a copy, comes last). Before 0.3.26, and for a USB camera's
MJPEG stream on any version, Pillow writes it in blocks of about 64 KiB (helpers.save(),
then Pillow's ImageFile._save()). Neither does more with the object than write(),
writelines() in principle, flush(), fileno() (which a BytesIO refuses, as here) and a look
at its name, which a BytesIO has none of.
"""

from __future__ import annotations

import io
from typing import Callable


class JpegSink(io.BytesIO):
    """A BytesIO to picamera2 that keeps the bytes objects written to it as they are, and
    calls on_write() as each comes: a picture exists from the first, before picamera2 has
    returned."""

    def __init__(self, on_write: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.parts: list[bytes] = []
        self.on_write = on_write

    def write(self, data) -> int:
        if self.on_write is not None:
            self.on_write()
        # A bytes object never changes; a bytearray or memoryview may be reused by its
        # writer, so only those are copied.
        part = data if type(data) is bytes else bytes(data)
        self.parts.append(part)
        return len(part)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def jpeg(self) -> memoryview:
        """All that was written, as one buffer: the one bytes object itself if it came in one
        write. Called once picamera2 has returned, so that a join never overlaps the
        writer's own copies."""
        return memoryview(self.parts[0] if len(self.parts) == 1 else b"".join(self.parts))
