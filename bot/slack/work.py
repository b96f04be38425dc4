"""The answering queue: bolt's listener threads ack and enqueue; one worker thread answers.

Answers are computed one at a time (the core is not promised to be thread-safe, and on a small
CPU box parallel model calls gain nothing). So listeners never compute: they parse the payload,
acknowledge it, and ``submit`` the work here. Slack's 3-second ack then holds whatever the queue
holds (issue: with ~32 questions queued behind an answer lock, commands and clicks missed it).

The queue is bounded: when it is full, ``submit`` returns False and the caller leaves the work to
be picked up later (events stay *received* in the state database; see ``sweep``).

Every ``sweep_every`` seconds, and at once after ``start``, the worker calls ``sweep()``: the app
uses it to renew its leases on the events it is working on and to take over received events that
no live process owns (left by a crash, a SIGTERM, or a full queue), which it submits again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MAX_QUEUED = 1000
SWEEP_SECONDS = 10.0


@dataclass(frozen=True)
class _Job:
    run: Callable[[], None]
    label: str


class WorkQueue:
    """A bounded queue of work and the one thread that runs it, in order.

    Args:
        maxsize: How many jobs may wait; ``submit`` refuses more.
        sweep_every: Seconds between two calls of the sweep given to ``start``.
    """

    def __init__(self, maxsize: int = MAX_QUEUED, *, sweep_every: float = SWEEP_SECONDS) -> None:
        self.maxsize = maxsize
        self.sweep_every = sweep_every
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=maxsize + 1)  # +1: the stop marker
        self._sweep: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._accepting = True
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0  # jobs submitted and not finished

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, sweep: Callable[[], None] | None = None) -> WorkQueue:
        """Start the worker thread; ``sweep`` runs at once and then every ``sweep_every`` seconds."""
        if self._thread is None or not self._thread.is_alive():
            self._sweep = sweep
            self._stopping.clear()
            self._accepting = True
            self._thread = threading.Thread(target=self._run, name="trbot-answers", daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, run: Callable[[], None], label: str = "job") -> bool:
        """Queue ``run``; False if the queue is full or stopping (the caller keeps the work)."""
        if not self._accepting:
            return False
        with self._idle:
            if self._queue.qsize() >= self.maxsize:
                return False
            self._busy += 1
            self._queue.put_nowait(_Job(run, label))
        return True

    @property
    def queued(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return self._queue.qsize()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted job has finished; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float = 30.0) -> int:
        """Take no more work, finish the job in progress, and stop; returns the jobs left undone.

        Undone jobs are dropped here: the events behind them are still *received* in the state
        database, and the next start finishes them.
        """
        self._accepting = False
        self._stopping.set()
        left = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                left += 1
                self._done()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        return left

    # -- the worker --------------------------------------------------------------------------
    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stopping.is_set():
            if self._sweep is not None and time.monotonic() >= next_sweep:
                self._run_sweep()
                next_sweep = time.monotonic() + self.sweep_every
            try:
                job = self._queue.get(timeout=max(0.05, next_sweep - time.monotonic()))
            except queue.Empty:
                continue
            if job is None or self._stopping.is_set():
                if job is not None:
                    self._done()
                break
            try:
                job.run()
            except Exception:  # the job's own error boundary failed; keep serving the others
                logger.exception("unhandled error in queued work (%s)", job.label)
            finally:
                self._done()

    def _run_sweep(self) -> None:
        try:
            assert self._sweep is not None
            self._sweep()
        except Exception:
            logger.exception("the sweep for unfinished events failed; trying again later")

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy <= 0:
                self._busy = 0
                self._idle.notify_all()
