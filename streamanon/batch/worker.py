"""The per-file task every engine runs: anonymise one archive file, report what happened.

The task runs in a worker process (process pool) or a Ray worker. It never touches the
manifest; it returns a picklable ``TaskResult`` and the driver records it. Stages (the
detector model above all) are built once per process and config, then reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av.logging

from .._memory import MemoryTrimmer
from ..config import PipelineConfig
from ..errors import (
    AnonymizationError,
    ConfigError,
    SinkError,
    SourceError,
    SourceOpenError,
    StreamanonError,
    VerificationError,
)
from ..pipeline import Stages
from ..runner import partial_output, process_file
from ..verify import Verifier
from .discover import safe_output

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20
# Failures that repeat for the same input and settings; others (disk full, a dead
# worker, a missing model) are retried by the next run without --retry-failed.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    SourceError,
    ConfigError,
    AnonymizationError,
    VerificationError,
)

_STAGES: dict[str, Any] = {}
_VERIFIERS: dict[int, Any] = {}
_SETUP_DONE = False


@dataclass(frozen=True)
class Task:
    """One file to anonymise (all paths absolute, on storage the worker can see)."""

    rel: str
    src: str
    dst: str
    out_root: str
    config_json: str
    kind: str
    expected_frames: int = 0
    media_seconds: float = 0.0
    attempt: int = 1
    verify_every: int = 0  # --verify: check the output every N-th frame (0: not asked)


@dataclass
class TaskResult:
    """What a task did; ``status`` is ``"done"`` or ``"failed"``."""

    rel: str
    status: str
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None
    output_hash: str | None = None
    frames: int = 0
    expected_frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    exit_code: int | None = None
    retryable: bool = False
    verify: dict[str, Any] | None = None  # the --verify verdict (verify.Verdict.to_dict), if run
    output: str | None = None  # the output's path under the output folder when not the task's (NAME.partial.EXT)
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def setup_process(verbose: bool = False) -> None:
    """Per-process setup for workers: quiet FFmpeg, logging to stderr (idempotent)."""
    global _SETUP_DONE
    if _SETUP_DONE:
        return
    _SETUP_DONE = True
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.WARNING,
            format="streamanon worker %(process)d: %(message)s",
            stream=sys.stderr,
        )
    if not verbose:
        av.logging.set_level(av.logging.PANIC)


def init_pool_worker(verbose: bool) -> None:
    """``ProcessPoolExecutor`` initializer: die with the driver, leave Ctrl-C to the driver.

    The driver owns interruption: on Ctrl-C/SIGTERM it kills the workers, so an
    interrupted file never gets its partial output renamed into place. If the driver is
    killed (SIGKILL), the kernel kills the workers too (``PR_SET_PDEATHSIG`` on Linux, a
    watchdog thread elsewhere), so no orphan keeps writing into the output folder.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if not _set_pdeathsig():
        threading.Thread(target=_watch_parent, args=(parent,), name="streamanon-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(1)
    setup_process(verbose)
    MemoryTrimmer().start()  # for the worker's life, as the command's own process (_memory)


def _set_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        return int(libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _stages(config_json: str) -> Any:
    """The process's ``Stages`` for this config, built on first use."""
    stages = _STAGES.get(config_json)
    if stages is None:
        stages = Stages(PipelineConfig.from_json(config_json))
        _STAGES.clear()  # one config per batch; never keep two models alive
        _STAGES[config_json] = stages
    return stages


def _verifier(every: int) -> Any:
    """The process's ``verify.Verifier`` for ``every`` (None when not asked), built on first use."""
    if every <= 0:
        return None
    verifier = _VERIFIERS.get(every)
    if verifier is None:
        verifier = _VERIFIERS[every] = Verifier(every=every)
    return verifier


def process_task(task: Task) -> TaskResult:
    """Anonymise ``task.src`` into ``task.dst``; never raises for a bad file.

    Returns:
        ``done`` with counts and hashes, or ``failed`` with the error's class, message,
        exit code and whether a later run should retry it on its own.
    """
    setup_process()
    res = TaskResult(task.rel, "failed", expected_frames=task.expected_frames)
    t0 = time.perf_counter()
    owned = _owned_output(task)
    before = _identity(owned) if owned is not None else None
    try:
        _run(task, res)
        res.status = "done"
    except StreamanonError as exc:
        _record_error(res, exc, task)
    except Exception as exc:  # a worker must report, not die: the driver records it
        log.debug("internal error on %s", task.rel, exc_info=True)
        res.error = f"internal error: {type(exc).__name__}: {exc}"
        res.error_type, res.exit_code, res.retryable = type(exc).__name__, 1, True
    res.seconds = round(time.perf_counter() - t0, 3)
    if res.status == "failed" and owned is not None and before is not None and _identity(owned) == before:
        _drop_stale_output(owned, res)
    return res


def _owned_output(task: Task) -> Path | None:
    """The task's output path if it really lies in the output folder (else never touch it)."""
    try:
        dst = safe_output(Path(task.out_root), task.rel)
    except SinkError:
        return None
    return dst if str(dst) == task.dst else None


def _identity(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, mtime) of an existing output; a rename into place changes it."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def _run(task: Task, res: TaskResult) -> None:
    try:
        st = os.stat(task.src)
        res.size, res.mtime_ns = st.st_size, st.st_mtime_ns
        res.content_hash = file_hash(task.src)
    except OSError as exc:
        raise SourceOpenError(f"cannot read {task.src}: {exc.strerror or exc}", source=task.src) from exc
    root = Path(task.out_root)
    dst = safe_output(root, task.rel)  # checked again here: folders may have changed since planning
    if str(dst) != task.dst:
        raise SinkError(f"output {task.dst} does not match the archive path {task.rel!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    safe_output(root, task.rel)  # and once the folders exist
    config = PipelineConfig.from_json(task.config_json)
    report = process_file(
        task.src,
        dst,
        config,
        stages=_stages(task.config_json),
        progress=False,
        report_frames=False,
        verifier=_verifier(task.verify_every),
    )
    _take_report(res, report)
    res.output_hash = file_hash(dst)


def _take_report(res: TaskResult, report: Any) -> None:
    res.frames, res.faces = int(report.frames), int(report.faces)
    if report.expected_frames:
        res.expected_frames = int(report.expected_frames)
    if getattr(report, "verify", None):
        res.verify = dict(report.verify)


def _record_error(res: TaskResult, exc: StreamanonError, task: Task) -> None:
    res.error = f"{type(exc).__name__}: {exc}"
    res.error_type, res.exit_code = type(exc).__name__, exc.exit_code
    res.retryable = not isinstance(exc, DETERMINISTIC_ERRORS)
    report = getattr(exc, "report", None)
    if report is not None:
        _take_report(res, report)
    written = getattr(report, "output", None)
    if report is None or not written or not Path(written).is_file():
        return
    if isinstance(exc, VerificationError) and Path(written) == Path(task.dst):
        written = _set_aside(Path(written), res)
    # a truncated input: the frames that decoded, anonymised, under the partial name the report gives
    with contextlib.suppress(OSError):
        res.output_hash = file_hash(written)
    with contextlib.suppress(ValueError):
        res.output = Path(written).relative_to(task.out_root).as_posix()


def _set_aside(dst: Path, res: TaskResult) -> Path:
    """An output that failed ``--verify`` is complete but not anonymous: it leaves the
    final name for ``NAME.partial.EXT``, as an incomplete output does, so the mirror
    never shows it as a finished file."""
    partial = partial_output(dst)
    try:
        os.replace(dst, partial)
    except OSError as exc:  # it must not stay under the final name
        with contextlib.suppress(OSError):
            dst.unlink()
        res.error = f"{res.error} (output removed: {exc.strerror or exc})"
        return dst
    res.error = f"{res.error} (kept as {partial.name})"
    return partial


def _drop_stale_output(dst: Path, res: TaskResult) -> None:
    """A failed file keeps no output from an earlier version of its input."""
    if dst.is_symlink() or not dst.is_file():
        return
    try:
        dst.unlink()
        res.output_hash = None
        log.info("removed stale output %s", dst)
    except OSError as exc:
        log.warning("cannot remove stale output %s: %s", dst, exc)
