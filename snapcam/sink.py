"""Where picamera2 writes a shot's JPEG: the bytes it writes are kept, not copied.

picamera2 writes a JPEG to an io.BytesIO it is handed (it checks with isinstance), and a
BytesIO copies each write into a buffer of its own: for a moment the picture is in memory
twice over, or three times. From picamera2 0.3.26 on, simplejpeg hands over the whole JPEG
as one bytes object, written at once, or in three writes that splice an EXIF segment in
after its first two bytes (request.py save()); before 0.3.26, Pillow writes it in blocks of
64 KiB (helpers.save(), then Pillow's ImageFile._save()). Either way the writer only calls
write(), flush() and fileno() (which a BytesIO refuses, as here).
"""

from __future__ import annotations

import io


class JpegSink(io.BytesIO):
    """A BytesIO to picamera2 that keeps the bytes objects written to it as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        # A bytes object never changes; a bytearray or memoryview may be reused by its
        # writer, so only those are copied.
        part = data if type(data) is bytes else bytes(data)
        self.parts.append(part)
        return len(part)

    def jpeg(self) -> memoryview:
        """All that was written, as one buffer: the one bytes object itself if it came in one
        write. Called once picamera2 has returned, so that a join never overlaps the
        writer's own copies."""
        whole = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = [whole]
        return memoryview(whole)
