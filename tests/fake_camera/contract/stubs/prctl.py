"""Stand-in for python-prctl (a C extension that needs libcap), imported by picamera2."""
