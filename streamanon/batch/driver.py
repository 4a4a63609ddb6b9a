"""The batch driver: discover, plan against the manifest, dispatch, record.

Only this process writes the manifest; engines call back into it with each result. A
run does, in order: take the output folder's lock, delete temp files a killed run left,
turn rows still ``running`` into ``pending`` (the previous run was killed mid-file), walk
and probe the archive, decide per file (up to date / redo / skip), run the tasks, and
close the run row with its outcome.

A file is up to date when its row is ``done`` with the same size and mtime (or, if those
changed, the same content hash), the same settings hash and its output still exists.
The settings hash is ``PipelineConfig.settings_hash()`` with the thread count zeroed:
threads follow ``--jobs`` and must not force a redo. A failed file is retried by a later
run when its input or settings changed, when the failure was environmental (disk full,
dead worker...) or with ``retry_failed``; a corrupt input is not re-tried as is.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..anonymize import create_anonymizer
from ..config import PipelineConfig
from ..errors import ConfigError, SinkError, SourceOpenError
from .discover import Entry, clean_partials, probe, safe_output, walk
from .engine import Engine, LocalEngine
from .manifest import LOCK_NAME, RESERVED_NAMES, Manifest, Row, verify_columns
from .ray_engine import RayEngine, import_ray
from .worker import Task, TaskResult, file_hash

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_jobs(cores: int | None = None) -> int:
    """One pipeline per two cores: ONNX Runtime, decoding and encoding each want a thread."""
    return max(1, (cores or cpu_count()) // 2)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """ONNX Runtime threads per pipeline so that ``jobs`` pipelines share the cores."""
    return max(1, (cores or cpu_count()) // max(1, jobs))


def batch_settings_hash(config: PipelineConfig) -> str:
    """``settings_hash`` without the thread count (it follows --jobs, not the output)."""
    return dataclasses.replace(config, detect=dataclasses.replace(config.detect, threads=0)).settings_hash()


@dataclass
class BatchOptions:
    """What ``streamanon batch`` was asked to do."""

    archive: Path
    out_dir: Path
    config: PipelineConfig = field(default_factory=PipelineConfig)
    engine: str = "local"  # "local" | "ray"
    jobs: int | None = None
    ray_address: str | None = None
    retry_failed: bool = False
    progress: bool = True
    verbose: bool = False
    verify_every: int = 0  # --verify / --verify-every N: check each output (0: not asked)


@dataclass
class BatchResult:
    """What one run did, and the state of the whole manifest after it."""

    run_id: int
    processed: int = 0  # tasks run (done or failed) in this run
    done: int = 0
    failed: int = 0
    refused: int = 0  # newly recorded as failed without running (unreadable, not processable)
    skipped: int = 0  # newly recorded as skipped in this run
    up_to_date: int = 0
    interrupted: list[str] = field(default_factory=list)  # rows a killed run left running
    partials_removed: int = 0
    forgotten: int = 0
    seconds: float = 0.0
    media_seconds: float = 0.0  # video processed in this run
    frames: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # manifest rows per status after the run
    failures: list[Row] = field(default_factory=list)
    exit_code: int = 0


def check_dirs(archive: Path, out_dir: Path) -> None:
    """Validate the two folders before anything is written.

    Raises:
        SourceOpenError: the archive is missing or not a folder.
        SinkError: the output folder is the archive, contains it, or is a file.
    """
    if not archive.is_dir():
        raise SourceOpenError(f"archive folder not found: {archive}", source=str(archive))
    a, o = os.path.realpath(archive), os.path.realpath(out_dir)
    if a == o:
        raise SinkError(f"output folder {out_dir} is the archive folder")
    if a.startswith(o.rstrip(os.sep) + os.sep):
        raise SinkError(f"output folder {out_dir} contains the archive {archive}: outputs could overwrite inputs")
    if out_dir.exists() and not out_dir.is_dir():
        raise SinkError(f"output {out_dir} is not a folder")


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` so two batches never share a manifest."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out_dir / LOCK_NAME, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise SinkError(f"another streamanon batch is writing to {out_dir}") from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def make_engine(opts: BatchOptions, jobs: int, threads: int) -> Engine:
    """The engine named by ``opts.engine`` (Ray imported only for ``"ray"``)."""
    if opts.engine == "local":
        return LocalEngine(jobs, verbose=opts.verbose)
    if opts.engine == "ray":
        if opts.ray_address:  # a cluster: reserve the pipeline's threads per task
            return RayEngine(opts.ray_address, jobs=opts.jobs, cpus_per_task=float(threads))
        return RayEngine(None, jobs=jobs, cpus_per_task=1.0)
    raise ConfigError(f"unknown engine {opts.engine!r}: choose local or ray")


def run_batch(opts: BatchOptions, engine: Engine | None = None) -> BatchResult:
    """Anonymise every media file of ``opts.archive`` into ``opts.out_dir`` (resumable).

    Args:
        opts: folders, settings, engine and parallelism.
        engine: an engine to use instead of the one ``opts`` names (tests).

    Returns:
        The run's ``BatchResult``; ``exit_code`` is non-zero when any file is failed.

    Raises:
        SourceOpenError, SinkError, ConfigError: the run could not start.
        KeyboardInterrupt: the run was interrupted; finished files are recorded.
    """
    archive, out_dir = Path(opts.archive), Path(opts.out_dir)
    if opts.jobs is not None and opts.jobs < 1:
        raise ConfigError(f"invalid jobs={opts.jobs!r}: expected an integer >= 1")
    create_anonymizer(opts.config.anonymize)  # an unknown method fails here, not once per file
    if engine is None and opts.engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine {opts.engine!r}: choose local or ray")
    if engine is None and opts.engine == "ray":
        import_ray()  # MissingDependencyError before anything is written
    check_dirs(archive, out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc
    with output_lock(out_dir), Manifest(out_dir) as manifest:
        return _Run(opts, archive, out_dir, manifest, engine).execute()


class _Run:
    """One run's state (only used by ``run_batch``)."""

    def __init__(
        self, opts: BatchOptions, archive: Path, out_dir: Path, manifest: Manifest, engine: Engine | None
    ) -> None:
        self.opts, self.archive, self.out_dir, self.m = opts, archive, out_dir, manifest
        cores = cpu_count()
        if engine is None and opts.engine == "ray" and opts.ray_address:
            # A cluster: each task reserves the pipeline's threads; jobs 0 = as many as the cluster fits.
            self.jobs = opts.jobs or 0
            threads = opts.config.detect.threads or 2
        else:
            self.jobs = opts.jobs or (engine.jobs if engine is not None else default_jobs(cores))
            threads = opts.config.detect.threads or threads_per_job(self.jobs, cores)
        detect = dataclasses.replace(opts.config.detect, threads=threads)
        engine_dir = getattr(detect, "engine_dir", None)
        if isinstance(engine_dir, str) and not os.path.isabs(engine_dir):
            # workers (Ray ones above all) do not share the driver's working directory
            detect = dataclasses.replace(detect, engine_dir=os.path.abspath(engine_dir))
        self.config = dataclasses.replace(opts.config, detect=detect)
        self.config_json = self.config.to_json()
        self.settings_hash = batch_settings_hash(opts.config)  # as given: independent of jobs and cwd
        self.engine = engine or make_engine(opts, self.jobs, threads)
        self.out_root = os.path.abspath(out_dir)
        self.result = BatchResult(run_id=0)
        self.bar: Any = None
        self.files_total = 0
        self.files_done = 0

    def execute(self) -> BatchResult:
        t0 = time.perf_counter()
        res = self.result
        res.partials_removed = len(clean_partials(self.out_dir))
        res.interrupted = self.m.reset_running()
        for p in res.interrupted:
            log.warning("%s was interrupted by an earlier run; redoing it", p)
        res.run_id = self.m.start_run(
            str(self.archive.resolve()), self.settings_hash, self.config_json, self.engine.name, self.jobs, __version__
        )
        outcome = "interrupted"
        try:
            tasks = self._plan()
            self._open_bar(tasks)
            self.engine.run(tasks, self._on_start, self._on_done)
            outcome = "completed"
        finally:
            if self.bar is not None:
                self.bar.close()
            if outcome != "completed":
                self._requeue_running()
            res.seconds = round(time.perf_counter() - t0, 3)
            self.m.finish_run(res.run_id, res.processed, res.failed + res.refused, outcome)
        res.counts = self.m.counts()
        res.failures = self.m.with_status("failed")
        res.exit_code = max((r.exit_code or 1 for r in res.failures), default=0)
        return res

    # -- planning ----------------------------------------------------------------------
    def _plan(self) -> list[Task]:
        rows = self.m.rows()
        seen: set[str] = set()
        tasks: list[Task] = []
        with self.m.transaction():
            for entry in walk(self.archive, self.out_dir):
                seen.add(entry.rel)
                task = self._decide(entry, rows.get(entry.rel))
                if task is not None:
                    tasks.append(task)
            gone = [p for p in rows if p not in seen]
            self.result.forgotten = self.m.forget(gone)
        if gone:
            log.info("%d manifest entries no longer in the archive were dropped", len(gone))
        return tasks

    def _decide(self, entry: Entry, row: Row | None) -> Task | None:
        if entry.kind != "file":
            self._record(entry.rel, entry.kind, entry.reason, row, entry)
            return None
        if entry.rel in RESERVED_NAMES:
            self._record(entry.rel, "failed", "name clashes with the batch manifest in the output folder", row, entry)
            return None
        unchanged = row is not None and self._unchanged(entry, row)
        if row is not None and unchanged:
            if row.status == "skipped":
                return None
            same_settings = row.settings_hash == self.settings_hash
            if row.status == "done" and same_settings and row.output and (self.out_dir / row.output).is_file():
                if self._verified_if_asked(row):
                    self.result.up_to_date += 1
                    return None
            if row.status == "failed" and not row.retryable and not self.opts.retry_failed:
                if same_settings or row.settings_hash is None:  # probe failures do not depend on settings
                    return None
        found = probe(entry.path)
        if found.kind is None:
            self._record(entry.rel, "failed" if found.fail else "skipped", found.reason, row, entry)
            return None
        try:
            dst = safe_output(Path(self.out_root), entry.rel)
        except SinkError as exc:
            self._record(entry.rel, "failed", str(exc), row, entry)
            return None
        self.m.put(
            Row(
                entry.rel,
                "pending",
                kind=found.kind,
                size=entry.size,
                mtime_ns=entry.mtime_ns,
                content_hash=row.content_hash if (row and unchanged) else None,
                expected_frames=found.frames,
                media_seconds=round(found.duration, 3),
                output=entry.rel,
                settings_hash=self.settings_hash,
                attempts=row.attempts if row else 0,
                run_id=row.run_id if row else None,
            )
        )
        return Task(
            rel=entry.rel,
            src=str(entry.path.absolute()),
            dst=str(dst),
            out_root=self.out_root,
            config_json=self.config_json,
            kind=found.kind,
            expected_frames=found.frames,
            media_seconds=found.duration,
            verify_every=self.opts.verify_every,
        )

    def _verified_if_asked(self, row: Row) -> bool:
        """A file done without ``--verify`` is redone when this run asks for it: its output
        was never checked."""
        return not self.opts.verify_every or row.verify_passed is not None

    def _unchanged(self, entry: Entry, row: Row) -> bool:
        """Same size and mtime, or same bytes (a touched but identical file)."""
        if row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            return True
        if row.size != entry.size or not row.content_hash:
            return False
        try:
            same = file_hash(entry.path) == row.content_hash
        except OSError:
            return False
        if same:
            self.m.update(entry.rel, mtime_ns=entry.mtime_ns)
        return same

    def _record(self, rel: str, status: str, reason: str | None, row: Row | None, entry: Entry) -> None:
        """A row decided without a task (skipped, or failed before any work)."""
        if row is not None and (row.status, row.error, row.size, row.mtime_ns) == (
            status,
            reason,
            entry.size or None,
            entry.mtime_ns or None,
        ):
            return  # nothing new
        if row is not None and row.output:
            self._drop_output(row.output)
        self.m.put(
            Row(
                rel,
                status,
                size=entry.size or None,
                mtime_ns=entry.mtime_ns or None,
                error=reason,
                error_type="NotProcessable" if status == "failed" else None,
                exit_code=SourceOpenError.exit_code if status == "failed" else None,
                run_id=self.result.run_id,
            )
        )
        if status == "skipped":
            self.result.skipped += 1
        else:
            self.result.refused += 1
            log.warning("%s: %s", rel, reason)

    def _drop_output(self, rel: str) -> None:
        """Remove the output of an input that is no longer processable (the manifest owns it)."""
        try:
            path = safe_output(self.out_dir, rel)
            if path.is_file():
                path.unlink()
                log.info("removed %s: its input is no longer processable", path)
        except (SinkError, OSError) as exc:
            log.warning("cannot remove stale output %s: %s", rel, exc)

    # -- results -----------------------------------------------------------------------
    def _on_start(self, task: Task) -> None:
        row = self.m.get(task.rel)
        attempts = (row.attempts if row else 0) + 1
        self.m.update(task.rel, status="running", attempts=attempts, error=None)

    def _on_done(self, task: Task, r: TaskResult) -> None:
        res = self.result
        res.processed += 1
        fields: dict[str, Any] = {
            "status": r.status,
            "error": r.error,
            "error_type": r.error_type,
            "exit_code": r.exit_code,
            "retryable": r.retryable,
            "frames": r.frames,
            "expected_frames": r.expected_frames or task.expected_frames,
            "faces": r.faces,
            "seconds": r.seconds,
            "output_hash": r.output_hash,
            "run_id": res.run_id,
            "worker": r.worker,
            **verify_columns(r.verify),
        }
        if r.output_hash is None:
            fields["output"] = None if r.status == "failed" else task.rel
        else:
            fields["output"] = r.output or task.rel  # a failed file's output under its partial name
        if r.size is not None:
            fields.update(size=r.size, mtime_ns=r.mtime_ns, content_hash=r.content_hash)
        self.m.update(task.rel, **fields)
        if r.status == "done":
            res.done += 1
            res.frames += r.frames
            res.media_seconds += task.media_seconds
        else:
            res.failed += 1
            self._say(f"{task.rel}: {r.error}")
        self.files_done += 1
        if self.bar is not None:
            self.bar.update(max(1, task.expected_frames))  # the units the total was counted in
            self.bar.set_postfix_str(f"files {self.files_done}/{self.files_total}, failed {res.failed}")

    def _requeue_running(self) -> None:
        """After an interruption, files a worker held go back to pending."""
        for row in self.m.with_status("running"):
            self.m.update(row.path, status="pending", error="interrupted")

    # -- progress ----------------------------------------------------------------------
    def _open_bar(self, tasks: list[Task]) -> None:
        self.files_total = len(tasks)
        if not (self.opts.progress and tasks and sys.stderr.isatty()):
            return
        from tqdm import tqdm

        total = sum(max(1, t.expected_frames) for t in tasks)
        self.bar = tqdm(total=total, unit="frame", desc="batch", dynamic_ncols=True)
        self.bar.set_postfix_str(f"files 0/{self.files_total}")

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.warning("%s", text)
