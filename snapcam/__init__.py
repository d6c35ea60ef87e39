"""snapcam: one photo from a Raspberry Pi camera into an expiring Redis hash, then exit.

snap.py is the command; this package is its code, one module per concern:
config (the settings), camera (picamera2), store (Redis), spool (shots Redis did not
take), guard (watchdog, camera lock, stop signals), status (each camera's status in
Redis, and --status), units (systemd timers), run (one shot, start to finish), cli (the
command line), logs (its lines in a terminal, the journal or a file) and launch (snap.py
under any python3).
"""

__version__ = "1.0.0"
