from concurrent.futures import CancelledError, Future


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

    def get_result(self, timeout=None):
        if self._hard_hang is not None and not self._future.done():
            self._hard_hang()
        return self._future.result(timeout=timeout)

    def cancel(self):
        self._future.set_exception(CancelledError())
