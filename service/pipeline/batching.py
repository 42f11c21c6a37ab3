"""Concurrent callers' faces through the network together.

A server thread that arrives while the network is busy queues its batch; when the network is free,
the first waiting thread runs every queued batch (up to ``max_rows`` rows) as one call and hands each
caller its rows. A lone caller runs at once, so nothing waits for a batch to fill: batches form only
from requests that would have waited anyway. One call over many faces costs less per face than
many calls over few (the performance document measures it), and the runtime's threads stay busy on
one call instead of being shared out between several.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np


class _Job:
    __slots__ = ("batch", "result", "error", "done")

    def __init__(self, batch: np.ndarray):
        self.batch, self.result, self.error, self.done = batch, None, None, False


class BatchingEmbed:
    """Wraps ``embed`` (an (N, ...) -> (N, D) function) so that concurrent calls share its runs."""

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], max_rows: int = 64):
        self._embed = embed
        self._max_rows = max(1, int(max_rows))
        self._pending: list[_Job] = []
        self._busy = False
        self._changed = threading.Condition()
        self.calls = 0  # runs of the wrapped function, for tests and metrics

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        job = _Job(batch)
        with self._changed:
            self._pending.append(job)
        while True:
            with self._changed:
                while self._busy and not job.done:
                    self._changed.wait()
                if job.done:
                    return self._answer(job)
                # The network is free and this job still waits: run the queue, this job among the
                # first unless a full batch is ahead of it (then the next turn takes it).
                jobs = self._take()
                self._busy = True
            try:
                self._run(jobs)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _take(self) -> list[_Job]:
        """Queued jobs, oldest first, up to ``max_rows`` rows (always at least one job)."""
        taken, rows = [], 0
        while self._pending and (not taken or rows + len(self._pending[0].batch) <= self._max_rows):
            job = self._pending.pop(0)
            taken.append(job)
            rows += len(job.batch)
        return taken

    def _run(self, jobs: list[_Job]) -> None:
        try:
            out = self._embed(jobs[0].batch if len(jobs) == 1 else np.concatenate([j.batch for j in jobs]))
            self.calls += 1
            rows = sum(len(job.batch) for job in jobs)
            if len(out) != rows:
                raise RuntimeError(f"the network answered {len(out)} rows for {rows}")
            start = 0
            for job in jobs:
                job.result = out[start:start + len(job.batch)]
                start += len(job.batch)
        except BaseException as exc:  # every caller of this run sees the failure, none hangs
            for job in jobs:
                job.error = exc
        finally:
            for job in jobs:
                job.done = True

    @staticmethod
    def _answer(job: _Job) -> np.ndarray:
        if job.error is not None:
            raise job.error
        return job.result
