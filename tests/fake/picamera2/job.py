import os
from concurrent.futures import CancelledError, Future

# The same picamera2 version as the package (see __init__.py): Job.get_result(timeout) since
# 0.3.17 (v0.3.19 picamera2/job.py; v0.3.12 job.py takes none), Job.cancel() since 0.3.20
# (commit ddd2ca3).
_V = tuple(int(p) for p in (os.environ.get("FAKE_PICAMERA2_VERSION") or "0.3.38").split("."))


class Job:
    """Result of an asynchronous camera call (wait=False), like picamera2.job.Job."""

    def __init__(self, signal_function=None):
        self._future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        # Set for a job that can never complete and must not return even on a timeout.
        self._hard_hang = None

    def _finish(self, result=None, error=None):
        if error is None:
            self._future.set_result(result)
        else:
            self._future.set_exception(error)
        if self._signal_function:
            self._signal_function(self)

    def _result(self, timeout=None):
        if self._hard_hang is not None and not self._future.done():
            self._hard_hang()
        return self._future.result(timeout=timeout)

    if _V >= (0, 3, 17):

        def get_result(self, timeout=None):
            return self._result(timeout)

    else:

        def get_result(self):
            return self._result()

    if _V >= (0, 3, 20):

        def cancel(self):
            self._future.set_exception(CancelledError())
