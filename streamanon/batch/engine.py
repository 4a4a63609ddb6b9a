"""Engines run tasks and hand results back to the driver, which alone writes the manifest.

``LocalEngine`` is a ``ProcessPoolExecutor`` with the *spawn* start method: each pipeline
runs threads (decoder, ONNX Runtime, encoder), and forking a threaded process is unsafe.
At most ``jobs`` tasks are in flight, so ``running`` in the manifest means "a worker has
it". A worker that dies (OOM killer, segfault) breaks the pool: the pool is rebuilt and
the files it held are retried, up to ``max_attempts`` times each.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from .worker import Task, TaskResult, init_pool_worker, process_task

log = logging.getLogger(__name__)

TaskFn = Callable[[Task], TaskResult]
OnStart = Callable[[Task], None]
OnDone = Callable[[Task, TaskResult], None]


class Engine(Protocol):
    """Runs every task once (or until it gives up) and reports each result in the caller's thread."""

    name: str
    jobs: int

    def run(self, tasks: Sequence[Task], on_start: OnStart, on_done: OnDone) -> None: ...


def crashed_result(task: Task, why: str) -> TaskResult:
    """The result recorded for a task whose worker died and was not retried further."""
    return TaskResult(
        task.rel,
        "failed",
        expected_frames=task.expected_frames,
        error=f"WorkerCrashed: {why} (attempt {task.attempt})",
        error_type="WorkerCrashed",
        exit_code=1,
        retryable=True,
        worker="",
    )


class LocalEngine:
    """Worker processes on this machine.

    Args:
        jobs: worker processes (and tasks in flight).
        task_fn: the per-file function; module-level so that spawned workers can import it.
        max_attempts: tries per file when its worker dies.
        verbose: debug logging in the workers.
    """

    name = "local"

    def __init__(self, jobs: int, task_fn: TaskFn = process_task, max_attempts: int = 3, verbose: bool = False) -> None:
        self.jobs = max(1, int(jobs))
        self.task_fn = task_fn
        self.max_attempts = max(1, max_attempts)
        self.verbose = verbose
        self.crashes = 0

    def _pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_pool_worker,
            initargs=(self.verbose,),
        )

    def run(self, tasks: Sequence[Task], on_start: OnStart, on_done: OnDone) -> None:
        """Run ``tasks``; on any exception (Ctrl-C included) kill the workers first.

        When a worker dies with several files in flight, nobody can tell which file killed
        it: those files are re-run one at a time ("suspects"), and only a death with a
        single file in flight counts as an attempt of that file.
        """
        todo: deque[Task] = deque(tasks)
        suspects: deque[Task] = deque()
        inflight: dict[cf.Future[TaskResult], Task] = {}
        pool = self._pool()
        try:
            while todo or suspects or inflight:
                if suspects:
                    if not inflight:
                        self._submit(pool, suspects.popleft(), inflight, on_start)
                else:
                    while todo and len(inflight) < self.jobs:
                        self._submit(pool, todo.popleft(), inflight, on_start)
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                crashed: list[Task] = []
                for fut in done:
                    task = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        crashed.append(task)
                        continue
                    except Exception as exc:  # e.g. an unpicklable result: record, keep going
                        log.debug("task %s raised in the pool", task.rel, exc_info=True)
                        result = dataclasses.replace(
                            crashed_result(task, f"{type(exc).__name__}: {exc}"), error_type=type(exc).__name__
                        )
                    on_done(task, result)
                if crashed:
                    crashed.extend(inflight.values())  # every other future of a broken pool fails too
                    inflight.clear()
                    pool = self._rebuild(pool)
                    if len(crashed) == 1:
                        self._retry(crashed[0], suspects, on_done)
                    else:
                        suspects.extend(crashed)
        except BaseException:
            self._kill(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _submit(
        self, pool: cf.ProcessPoolExecutor, task: Task, inflight: dict[cf.Future[TaskResult], Task], on_start: OnStart
    ) -> None:
        on_start(task)
        inflight[pool.submit(self.task_fn, task)] = task

    def _rebuild(self, pool: cf.ProcessPoolExecutor) -> cf.ProcessPoolExecutor:
        self.crashes += 1
        log.warning("a worker process died; restarting the worker pool")
        pool.shutdown(wait=True, cancel_futures=True)
        return self._pool()

    def _retry(self, task: Task, suspects: deque[Task], on_done: OnDone) -> None:
        """``task`` killed its worker while alone in flight: retry it alone, or give up."""
        if task.attempt >= self.max_attempts:
            on_done(task, crashed_result(task, "the worker process died while processing this file"))
        else:
            suspects.appendleft(dataclasses.replace(task, attempt=task.attempt + 1))

    @staticmethod
    def _kill(pool: cf.ProcessPoolExecutor) -> None:
        """Kill the workers so that no interrupted file is finalised; temp files stay for the next run to clean."""
        procs = getattr(pool, "_processes", None) or {}
        for proc in list(procs.values()):
            try:
                proc.kill()
            except (OSError, ValueError):
                pass
        for proc in list(procs.values()):
            try:
                proc.join(timeout=10)
            except (OSError, ValueError, AssertionError):
                pass
