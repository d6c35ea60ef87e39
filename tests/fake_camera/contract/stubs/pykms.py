"""Stand-in for the pykms bindings, imported by picamera2's DRM preview."""


class _Names:
    def __getattr__(self, name):
        return name


PixelFormat = _Names()  # PixelFormat.RGB888 and the like are read at import time
