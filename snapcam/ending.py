"""The end of a snap.py process: its exit code, without the interpreter's teardown.

When main() returns, the run is over: the shot is in Redis or in the spool, the status
written or given up within its bound, every line written. The interpreter would then still
finalise every module and object it made, one by one: about 30 ms, a twentieth of a shot's
wall time, that changes nothing on disk, in Redis or on the screen. end() does what of that
teardown matters, as the interpreter orders it, and skips the rest with os._exit().
Imports nothing of snap's: snap.py calls end() with main()'s exit code; the watchdog's own
end (guard.py) flushes the streams the same way.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def flush_streams() -> None:
    """Flush standard output and error; closed, full or a broken pipe, that changes nothing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def end(exit_code: int) -> None:
    """End the process with exit_code once nothing is left that the teardown would finish:
    the threads it would wait for joined (snap's own are daemons, bounded where they are
    used), the exit handlers run (logging's flush of its handlers, picamera2's close of a
    camera left open), what standard output and error still buffer written."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what Py_Finalize runs first; errors are printed, not raised
    flush_streams()
    os._exit(exit_code)
