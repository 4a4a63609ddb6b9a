"""Run the batch's per-file task on Ray: a local Ray instance, or a cluster by address.

Requirements:

* ``pip install 'streamanon[cluster]'`` (Ray) on the driver **and every node**, with the
  same streamanon version (the task is ``streamanon.batch.worker.process_task``).
* The archive and the output folder must be on storage **every node sees at the same
  path** (NFS, CephFS, a cluster file system...): tasks receive paths, not bytes, and
  write their output next to where the driver expects it. The driver also reads the
  archive (discovery) and keeps the SQLite manifest in the output folder; only the driver
  writes the manifest.

Tasks are retried by Ray when their worker process or node dies (``max_retries``). A task
never raises for a bad file: it returns a failed ``TaskResult``, so exceptions are not
retried (a corrupt file stays corrupt). Ray is imported only here, and only when used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, import_extra
from .engine import OnDone, OnStart, TaskFn, crashed_result
from .worker import Task, process_task

log = logging.getLogger(__name__)

WAIT_S = 1.0


def import_ray() -> Any:
    return import_extra("ray", "cluster")


class RayEngine:
    """Ray tasks, at most ``jobs`` in flight.

    Args:
        address: an existing cluster (``ray://host:10001`` or ``host:6379``, or ``auto``);
            None starts a private local instance with ``jobs`` CPUs and stops it at the end.
        jobs: tasks in flight; None on a cluster = its CPUs divided by ``cpus_per_task``.
        cpus_per_task: CPUs Ray reserves per task (the pipeline's threads).
        max_retries: retries of a task whose worker or node died.
        task_fn: the per-file function (importable on every node).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        cpus_per_task: float = 1.0,
        max_retries: int = 3,
        task_fn: TaskFn = process_task,
    ) -> None:
        if jobs is not None and jobs < 1:
            raise ConfigError(f"invalid jobs={jobs!r}: expected an integer >= 1")
        self.address = address
        self.jobs = jobs or 0
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries
        self.task_fn = task_fn
        self._ray = import_ray()  # fail before any work when Ray is missing

    def _init(self) -> bool:
        """Connect or start Ray; True if this engine started it (and must stop it)."""
        ray = self._ray
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home from a privacy tool
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None:
            kwargs["num_cpus"] = max(1, self.jobs or 1)
        try:
            ray.init(address=self.address or "local", **kwargs)  # "local": never a RAY_ADDRESS cluster by accident
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local instance"
            raise ConfigError(f"cannot start or reach Ray ({where}): {exc}") from exc
        return True

    def run(self, tasks: Sequence[Task], on_start: OnStart, on_done: OnDone) -> None:
        """Submit ``tasks`` as Ray tasks; results are recorded in this (the driver's) thread."""
        if not tasks:
            return
        ray = self._ray
        started = self._init()
        try:
            if not self.jobs:
                cpus = float(ray.cluster_resources().get("CPU", 1))
                self.jobs = max(1, int(cpus // max(self.cpus_per_task, 0.01)))
            remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=self.max_retries, retry_exceptions=False)(
                self.task_fn
            )
            self._loop(ray, remote, list(tasks), on_start, on_done)
        finally:
            if started:
                ray.shutdown()

    def _loop(self, ray: Any, remote: Any, todo: list[Task], on_start: OnStart, on_done: OnDone) -> None:
        todo.reverse()
        inflight: dict[Any, Task] = {}
        try:
            while todo or inflight:
                while todo and len(inflight) < self.jobs:
                    task = todo.pop()
                    on_start(task)
                    inflight[remote.remote(task)] = task
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    task = inflight.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # retries exhausted: worker/node lost
                        log.debug("ray task for %s failed", task.rel, exc_info=True)
                        result = crashed_result(
                            task, f"Ray task failed after {self.max_retries} retries: {type(exc).__name__}"
                        )
                    on_done(task, result)
        except BaseException:
            for ref in inflight:
                try:
                    ray.cancel(ref, force=True)
                except (ray.exceptions.RayError, ValueError, TypeError):
                    pass
            raise
