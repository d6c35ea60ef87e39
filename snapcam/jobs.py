"""picamera2's jobs, bounded by their own timeout on every picamera2 Pi OS ships.

picamera2 0.3.20 (commit ddd2ca3) made wait=<seconds> a timeout and brought
cancel_all_and_flush(); before it (Bullseye's 0.3.12, early Bookworm's 0.3.1x) a number is
taken as "wait, without limit". signal_function(job), called when a job completes, is in
every version: an event it sets bounds the wait there.
"""

from __future__ import annotations

import concurrent.futures
import threading


def has_timeouts(picam2) -> bool:
    """picamera2 0.3.20 (commit ddd2ca3) made wait=<seconds> a timeout and brought
    cancel_all_and_flush(); before it a number is taken as "wait, without limit"."""
    return hasattr(picam2, "cancel_all_and_flush")


def bounded(picam2, method, timeout: float):
    """method(wait=...) that ends within timeout, with TimeoutError, on every picamera2:
    picamera2 calls signal_function(job) when a job completes, in every version."""
    if has_timeouts(picam2):
        return method(wait=timeout)
    done = threading.Event()
    job = method(wait=False, signal_function=lambda job: done.set())
    if not done.wait(timeout):
        raise concurrent.futures.TimeoutError()
    return job.get_result()


def cancel_pending(picam2) -> None:
    """Drop the jobs a timeout or a signal left pending: they would block any later stop().

    picamera2 before 0.3.20 (Bullseye's 0.3.12) lacks cancel_all_and_flush(): its pending
    jobs stay, and close(), which stops the event loop first, still returns.
    """
    if has_timeouts(picam2):
        picam2.cancel_all_and_flush()
