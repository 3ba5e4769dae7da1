"""Overlap file work with model work: the reader decodes ahead and the writer encodes behind, each in
a thread with a bounded queue, so that the model never waits on ffmpeg or PNG and memory stays flat.

Errors raised in a thread are raised again, with their own type, in the thread that uses it.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

_DONE = object()


class Prefetch:
    """Iterate `items` in a background thread, at most `depth` items ahead of the consumer."""

    def __init__(self, items: Iterable, depth: int = 4):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidiff-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    return
        except BaseException as err:  # handed to the consumer, which raises it
            self._put((False, err))
            return
        self._put((True, _DONE))

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        while True:
            ok, item = self._queue.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (it may be inside a read: that read finishes)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Writer:
    """Run submitted jobs in order in a background thread, at most `depth` waiting.

    The first job that fails stops the rest; its error is raised by the next submit() or drain().
    """

    def __init__(self, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vidiff-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _DONE:
                    return
                if self._error is None:
                    job()
            except BaseException as err:
                self._error = err
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(job)

    def drain(self) -> None:
        """Wait until every submitted job has run; raise the first error."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.drain()
            else:
                # finish what was queued (finished frames are worth keeping for a resume), but the
                # error already on its way out is the one to report
                self._queue.join()
        finally:
            self.close()
