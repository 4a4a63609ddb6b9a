"""One command that proves the GPU path on a machine with one NVIDIA GPU (docs/gpu.md).

Usage (``benchmarks/gpu_check.sh`` installs the GPU extras first, then runs this)::

    python benchmarks/gpu_check.py                 # the whole check, < 8 min on one H100-class GPU
    python benchmarks/gpu_check.py --dry-run       # the plan + everything that needs no GPU (CI)

What it does, in order:

1. ``gpu``: ``nvidia-smi`` names the GPU (no GPU: the check stops with exit 2).
2. ``clips``: a 1080p and a 4K clip, upscaled from the shared ``openpose__video.avi``
   (1280x720 street scene, 15-25 faces) into a temporary folder, plus a 1080p25 clip for
   the RTSP feeds (``bench_streams.source_clip``).
3. ``engines``: FP16 TensorRT engines for CenterFace and the shipped generator
   (``build_engines.py``), timed.
4. ``file-1080p`` / ``file-4k``: file mode on TensorRT with NVDEC/NVENC (``--hwaccel cuda
   --encoder auto``); every frame's raw detections and anonymised regions are recorded.
5. ``generate-1080p``: the same 1080p clip with ``--method generate`` (generator on TensorRT).
6. ``cpu-ref``: the same clips and frames on the CPU (ONNX Runtime fp32, software decode).
7. compare: per frame, the GPU detector's boxes against the CPU's (IoU >= 0.5; faces whose
   score lies within ``--score-band`` of the threshold on either side may differ: FP16 vs
   FP32), and leaks: a face the CPU run masks (>= 90 % of its box inside the masked pixels)
   that the GPU run does not (borderline faces, within the band, are counted, not failed).
8. ``streams-8x1080p``: 8 RTSP feeds of 1080p25 from the loopback GStreamer server through
   one ``streamanon streams`` process (TensorRT, NVDEC, NVENC); total fps, drop rate,
   decode-to-write latency. Feeds are real time (25 fps each), so 200 fps is the most.

It prints one table (fps, latency, GPU memory, engine build time) and exits 1 on any
mismatch, leak, failed frame, GPU path not taken, or failed step.

``--dry-run`` needs no GPU: it prints the plan and checks that the scripts parse, the
clips can be made (a few frames), the engine build commands are well formed (they run
with ``--export-only``), the GPU extras are declared and parse as requirements, the
streams configuration validates (``streamanon streams --check``), the RTSP server can
start, and the CPU reference and the comparison run on a few frames (ONNX Runtime
against OpenVINO, fp32: CPU vs CPU).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402
from streamanon.config import PipelineConfig  # noqa: E402
from streamanon.track.association import box_iou  # noqa: E402
from streamanon.types import Detections  # noqa: E402

log = logging.getLogger("gpu_check")

SOURCE = "videos/openpose__video.avi"
SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160)}
GPU_EXTRAS = ("ort-gpu", "tensorrt")
IOU_MIN = 0.5
SCORE_BAND = 0.1  # FP16 vs FP32: faces this close to the threshold may be found by one run only
# TensorRT profile of the detector: batch 1-16, up to 1920x1088 (4K runs at 1920x1088).
DETECTOR_SHAPES = ("input.1:1x3x32x32", "input.1:1x3x1088x1920", "input.1:16x3x1088x1920")
PAPER_TARGETS = {"file-1080p": 500.0, "generate-1080p": 200.0}  # issue 24, not pass/fail


# -- comparison --------------------------------------------------------------------------
def unmatched(
    want: Detections, have: Detections, threshold: float, band: float = SCORE_BAND, iou: float = IOU_MIN
) -> int:
    """Faces of ``want`` clearly above the threshold (score >= threshold + band) that no box
    of ``have`` scoring at least threshold - band overlaps by IoU >= ``iou``."""
    sure = want.xyxy[want.score >= threshold + band].astype(np.float64)
    cand = have.xyxy[have.score >= threshold - band].astype(np.float64)
    if not len(sure):
        return 0
    return int((box_iou(sure, cand).max(axis=1, initial=0.0) < iou).sum())


@dataclass
class Comparison:
    """Boxes and leaks of a candidate run against the reference run, over a clip."""

    frames: int = 0
    frame_count_differs: bool = False
    missing: int = 0  # reference faces the candidate's detector did not find
    extra: int = 0  # candidate faces the reference's detector did not find
    mismatched_frames: list[int] = field(default_factory=list)
    leaks: int = 0  # faces the reference masked and the candidate did not
    leaked_frames: list[int] = field(default_factory=list)
    failed_frames: int = 0
    borderline: int = 0  # faces within the band of the threshold masked by the reference only

    @property
    def ok(self) -> bool:
        return not (self.frame_count_differs or self.missing or self.extra or self.leaks or self.failed_frames)

    def summary(self) -> str:
        note = f", {self.borderline} borderline faces masked by the CPU run only" if self.borderline else ""
        if self.ok:
            return f"OK ({self.frames} frames{note})"
        parts = []
        if self.frame_count_differs:
            parts.append("frame counts differ")
        if self.missing or self.extra:
            parts.append(f"boxes: {self.missing} missing, {self.extra} extra on frames {self.mismatched_frames[:8]}")
        if self.leaks:
            parts.append(f"LEAKS: {self.leaks} faces on frames {self.leaked_frames[:8]}")
        if self.failed_frames:
            parts.append(f"{self.failed_frames} failed frames")
        return "MISMATCH: " + "; ".join(parts) + note


@dataclass
class Recorded:
    """What one run did to each frame: raw detector output and the regions anonymised."""

    raw: dict[int, Detections] = field(default_factory=dict)
    masked: dict[int, Detections] = field(default_factory=dict)  # regions per frame; absent: fully masked
    size: tuple[int, int] = (0, 0)
    frames: int = 0
    failed: int = 0
    fps: float = 0.0
    call_ms: list[float] = field(default_factory=list)
    video: dict[str, Any] = field(default_factory=dict)
    inference: dict[str, Any] = field(default_factory=dict)
    anonymizer: dict[str, Any] = field(default_factory=dict)


def compare(ref: Recorded, cand: Recorded, config: PipelineConfig, band: float = SCORE_BAND) -> Comparison:
    """``cand`` against ``ref`` on the same frames (module doc, step 7)."""
    thr = config.detect.threshold
    out = Comparison(frames=cand.frames, failed_frames=cand.failed)
    out.frame_count_differs = ref.frames != cand.frames
    empty = Detections.empty()
    for i in sorted(set(ref.raw) | set(cand.raw)):
        r, c = ref.raw.get(i, empty), cand.raw.get(i, empty)
        miss, extra = unmatched(r, c, thr, band), unmatched(c, r, thr, band)
        out.missing += miss
        out.extra += extra
        if miss or extra:
            out.mismatched_frames.append(i)
    # Leaks: the faces the reference run itself masks, checked against the candidate's masks;
    # those clearly above the threshold fail the check, borderline ones (band) are counted.
    w, h = ref.size
    for i in range(min(ref.frames, cand.frames)):
        faces = _faces_at(ref.raw.get(i, empty), thr)
        if not len(faces):
            continue
        lost = _covered(faces, ref.masked.get(i), w, h, config) & ~_covered(faces, cand.masked.get(i), w, h, config)
        sure = faces.score >= thr + band
        out.borderline += int((lost & ~sure).sum())
        if (lost & sure).any():
            out.leaks += int((lost & sure).sum())
            out.leaked_frames.append(i)
    return out


def _covered(faces: Detections, masked: Detections | None, w: int, h: int, config: PipelineConfig) -> np.ndarray:
    """Which of ``faces`` lie >= 90 % inside the pixels ``masked`` covers (None: the whole frame)."""
    from streamanon.anonymize.mask import union_mask

    if masked is None:
        return np.ones(len(faces), np.bool_)
    a = config.anonymize
    mask = union_mask(masked, w, h, a.shape, a.mask_scale, a.mask_margin)
    return np.asarray(common.inside_fraction(faces, mask) >= common.MIN_INSIDE)


def _faces_at(d: Detections, threshold: float) -> Detections:
    return d[d.score >= threshold]


# -- runs --------------------------------------------------------------------------------
class RecordingDetector:
    """The stages' detector, recording each frame's raw detections and each call's time."""

    def __init__(self, inner: Any, rec: Recorded) -> None:
        self.inner = inner
        self.rec = rec
        self.score_margin = getattr(inner, "score_margin", 1.0)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # start_run, report, ... of a scheduling detector
        return getattr(self.inner, name)

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out: list[Detections] = self.inner(images)
        return out

    def detect_frames(self, images: Sequence[np.ndarray], indices: Sequence[int]) -> list[Detections]:
        t0 = time.perf_counter()
        inner = getattr(self.inner, "detect_frames", None)
        dets: list[Detections] = inner(images, indices) if inner is not None else self.inner(images)
        ms = 1000 * (time.perf_counter() - t0)
        with self._lock:
            self.rec.call_ms.append(ms)
            self.rec.raw.update(zip(indices, dets, strict=True))
        return dets


def run_file(clip: Path, out: Path, config: PipelineConfig) -> Recorded:
    """``clip`` through file mode (``runner.process_file``) with ``config``, recorded."""
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    rec = Recorded()
    stages = Stages(config)

    def recording(anonymizer: Any) -> Any:
        """The method's own object (its type and hooks kept), its ``apply`` recording the regions."""
        apply = anonymizer.apply

        def recorded(image: np.ndarray, dets: Detections, *args: Any) -> np.ndarray:
            rec.masked[args[0].index if args else len(rec.masked)] = dets
            out: np.ndarray = apply(image, dets, *args)
            return out

        anonymizer.apply = recorded
        return anonymizer

    stages.anonymizer_factory = _WrappedFactory(stages.anonymizer_factory, recording)  # type: ignore[assignment]
    stages.detector = RecordingDetector(stages.detector, rec)  # type: ignore[assignment]
    first = next(common.read_frames(clip, 1))
    rec.size = (first.width, first.height)
    stages.detector.inner([first.image])  # warm-up: engine load, compile, CUDA context
    report = process_file(clip, out, config, stages=stages, report_frames=False)
    rec.frames, rec.failed = report.frames, report.frames_failed
    rec.fps = report.frames / report.seconds if report.seconds else 0.0
    rec.video = dict(report.inference.get("video") or {})
    rec.inference = dict(report.inference)
    rec.anonymizer = {k: v for k, v in report.anonymizer.items() if not isinstance(v, list | dict)}
    return rec


class _WrappedFactory:
    """An anonymiser factory whose anonymisers are wrapped (recording the regions)."""

    def __init__(self, inner: Any, wrap: Callable[[Any], Any]) -> None:
        self._inner, self._wrap = inner, wrap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, **kwargs: Any) -> Any:
        return self._wrap(self._inner(**kwargs))


def gpu_config(method: str = "solid", engine_dir: Path = REPO / "engines") -> PipelineConfig:
    """Defaults, on TensorRT fp16 with NVDEC and NVENC (``--backend tensorrt --hwaccel cuda --encoder auto``)."""
    cfg = PipelineConfig()
    det = replace(cfg.detect, backend="tensorrt", precision="fp16", engine_dir=str(engine_dir))
    io = replace(cfg.io, hwaccel="cuda", encoder="auto")
    return replace(cfg, detect=det, io=io, anonymize=replace(cfg.anonymize, method=method))


def cpu_config(backend: str = "onnxruntime") -> PipelineConfig:
    """Defaults on the CPU in fp32 with software decode: the reference."""
    cfg = PipelineConfig()
    det = replace(cfg.detect, backend=backend, precision="fp32")  # type: ignore[arg-type]
    return replace(cfg, detect=det, io=replace(cfg.io, hwaccel="none", encoder="none"))


# -- clips and engines -------------------------------------------------------------------
def make_clip(dst: Path, size: tuple[int, int], frames: int, fps: int = 25) -> Path:
    """The shared street clip upscaled to ``size``, looped to ``frames`` frames (H.264, yuv420p)."""
    import av
    import cv2

    src = [f.image for f in common.read_frames(common.DATA / SOURCE, frames)]
    if not src:
        raise RuntimeError(f"no frame decoded from {common.DATA / SOURCE}")
    tmp = dst.with_name(".partial." + dst.name)
    with av.open(str(tmp), "w", format="mp4") as out:
        s: Any = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18", "g": str(fps)})
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        for n in range(frames):
            vf = av.VideoFrame.from_ndarray(cv2.resize(src[n % len(src)], size, interpolation=cv2.INTER_LINEAR))
            vf.pts, vf.time_base = n, Fraction(1, fps)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    tmp.replace(dst)
    return dst


def engine_commands(engine_dir: Path, export_only: bool = False) -> dict[str, list[str]]:
    """The ``build_engines.py`` command of each engine (``--export-only``: the dry run's)."""
    base = [sys.executable, str(REPO / "build_engines.py"), "--precision", "fp16", "--engine-dir", str(engine_dir)]
    mn, opt, mx = DETECTOR_SHAPES
    cmds = {
        "centerface": [*base, "--model", "centerface", "--min-shapes", mn, "--opt-shapes", opt, "--max-shapes", mx],
        "generator-64": [*base, "--model", "generator-64"],
    }
    if export_only:
        cmds = {k: [*v, "--export-only"] for k, v in cmds.items()}
    return cmds


def check_extras(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The GPU extras' requirements; raises when one is missing or does not parse."""
    import tomllib
    from packaging.requirements import Requirement

    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    reqs = []
    for name in GPU_EXTRAS:
        if name not in extras:
            raise RuntimeError(f"pyproject.toml declares no extra {name!r}")
        reqs += [str(Requirement(r)) for r in extras[name]]
    return reqs


# -- GPU memory --------------------------------------------------------------------------
class GpuMemory:
    """Peak used GPU memory (MiB, whole GPU, ``nvidia-smi``) while the block runs."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def used() -> float | None:
        out = nvidia_smi("memory.used", "csv,noheader,nounits", timeout=10)
        try:
            return float(out.split()[0]) if out else None
        except ValueError:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            v = self.used()
            if v is not None:
                self.peak = max(self.peak or 0.0, v)
            self._stop.wait(0.25)

    def __enter__(self) -> GpuMemory:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def nvidia_smi(query: str, fmt: str, timeout: float) -> str | None:
    """``nvidia-smi --query-gpu=QUERY --format=FMT``'s output, or None without a working one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        return subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", f"--format={fmt}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_name() -> str | None:
    """The first GPU's name, or None without a working ``nvidia-smi``."""
    out = nvidia_smi("name,driver_version", "csv,noheader", timeout=20)
    return out.splitlines()[0] if out else None


# -- streams -----------------------------------------------------------------------------
def streams_toml(
    path: Path, url: str, feeds: int, port: int, engine_dir: Path, report_dir: Path, gpu_video: bool = True
) -> Path:
    """A ``streamanon streams`` file: ``feeds`` sessions of ``url`` on TensorRT, NVDEC, NVENC
    (``gpu_video=False``: software decode and encode, for ``--check`` on a machine without a GPU)."""
    lines = [
        'backend = "tensorrt"',
        'precision = "fp16"',
        f'engine_dir = "{engine_dir}"',
        "det_size = 1920",
        f"batch = {min(feeds, 16)}",
        f"metrics_port = {port}",
        f'report_dir = "{report_dir}"',
        "[defaults]",
        'hwaccel = "cuda"' if gpu_video else 'hwaccel = "none"',
        'encoder = "auto"' if gpu_video else 'encoder = "none"',
        "read_timeout = 5",
    ]
    for i in range(feeds):
        lines += ["[[stream]]", f'name = "f{i}"', f'input = "{url}"', f'output = "{path.parent / f"f{i}.ts"}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def run_streams(feeds: int, seconds: float, engine_dir: Path, tmp: Path) -> dict[str, Any]:
    """8 feeds of 1080p25 through one ``streamanon streams`` (bench_streams.py's measurement)."""
    import bench_streams as bs  # benchmarks/ is on the path (this file's folder)

    clip = bs.source_clip(max(20.0, seconds + 15), 1080)
    server = bs.GstServer(file=clip).start()
    port = bs.free_port()
    cfg = streams_toml(tmp / "streams.toml", server.url("file"), feeds, port, engine_dir, tmp / "reports")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamanon", "streams", str(cfg), "-q"], stderr=subprocess.PIPE, env=env
    )
    try:
        bs._wait_all_writing([port], feeds, 120)
        time.sleep(5)
        m0, t0 = bs._scrape(port), time.monotonic()
        time.sleep(seconds)
        m1, measured = bs._scrape(port), time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        server.kill()
    fo0, fo1 = (bs._per_feed(m, "streamanon_live_frames_out_total") for m in (m0, m1))
    fi0, fi1 = (bs._per_feed(m, "streamanon_live_frames_in_total") for m in (m0, m1))
    fd0, fd1 = (bs._per_feed(m, "streamanon_live_frames_dropped_total") for m in (m0, m1))
    out_frames = sum(fo1[s] - fo0.get(s, 0) for s in fo1)
    drops = [(fd1.get(s, 0) - fd0.get(s, 0)) / max(1.0, fi1.get(s, 0) - fi0.get(s, 0)) for s in fo1]
    p50s, p95s = [], []
    for r in sorted((tmp / "reports").glob("*.json")):
        try:
            lat = json.loads(r.read_text())["summary"]["metrics"].get("latency_s", {})
        except (OSError, ValueError, KeyError):
            continue
        if lat.get("p50") is not None:
            p50s.append(lat["p50"])
            p95s.append(lat["p95"])
    return {
        "fps": out_frames / measured,
        "feeds_writing": sum(1 for s in fo1 if fo1[s] > fo0.get(s, 0)),
        "drop_rate": max(drops) if drops else 1.0,
        "latency_ms": (1000 * float(np.median(p50s)), 1000 * max(p95s)) if p50s else None,
        "exit": proc.returncode,
        "stderr": err.decode(errors="replace")[-400:],
    }


# -- the check ---------------------------------------------------------------------------
@dataclass
class Row:
    step: str
    fps: float | None = None
    latency: str = ""
    gpu_mib: float | None = None
    build_s: float | None = None
    result: str = ""
    ok: bool = True


def print_table(rows: list[Row], title: str) -> None:
    print(f"\n{title}")
    print(f"{'step':<18} {'fps':>8} {'latency ms':>16} {'GPU MiB':>8} {'build s':>8}  result")
    for r in rows:
        fps = f"{r.fps:8.1f}" if r.fps is not None else f"{'-':>8}"
        mem = f"{r.gpu_mib:8.0f}" if r.gpu_mib is not None else f"{'-':>8}"
        build = f"{r.build_s:8.1f}" if r.build_s is not None else f"{'-':>8}"
        print(f"{r.step:<18} {fps} {r.latency or '-':>16} {mem} {build}  {r.result}")


def plan(ns: argparse.Namespace) -> list[str]:
    return [
        "gpu: nvidia-smi names the GPU",
        f"clips: {SOURCE} upscaled to 1080p ({ns.frames} frames) and 4K ({ns.frames_4k} frames)",
        "engines: " + "; ".join(" ".join(c[1:]) for c in engine_commands(ns.engine_dir).values()),
        "file-1080p, file-4k: file mode, --backend tensorrt --precision fp16 --hwaccel cuda --encoder auto",
        f"generate-1080p: --method generate ({ns.frames_generate} frames), generator on TensorRT",
        "cpu-ref: the same frames, ONNX Runtime fp32, software decode; compare boxes and leaks",
        f"streams-8x1080p: {ns.feeds} RTSP feeds of 1080p25 through one `streamanon streams`, {ns.seconds:.0f} s",
    ]


def _ms(values: list[float]) -> str:
    if not values:
        return ""
    return f"{np.median(values):.1f}/{np.percentile(values, 95):.1f}"


def file_row(step: str, rec: Recorded, ref: Recorded, config: PipelineConfig, need_gpu_video: bool) -> Row:
    cmp = compare(ref, rec, config)
    row = Row(step, rec.fps, _ms(rec.call_ms), result=cmp.summary(), ok=cmp.ok)
    if need_gpu_video:
        dec = str((rec.video.get("decode") or {}).get("device", rec.video.get("decode")))
        enc = str((rec.video.get("encode") or {}).get("codec", rec.video.get("encode")))
        backend = str(rec.inference.get("backend", ""))
        if "cuda" not in dec or "nvenc" not in enc or "tensorrt" not in backend:
            row.ok = False
            row.result += f"; GPU path not taken (decode {dec}, encode {enc}, backend {backend})"
        target = PAPER_TARGETS.get(step)
        if target is not None:
            row.result += f"; paper target {target:.0f} fps {'met' if rec.fps >= target else 'NOT met'}"
    return row


def dry_run(ns: argparse.Namespace, tmp: Path) -> list[Row]:
    rows: list[Row] = []

    def step(name: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        try:
            result, ok = fn(), True
        except Exception as exc:  # reported in the table, exit 1
            result, ok = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", False
        rows.append(Row(name, result=f"{result} ({time.perf_counter() - t0:.1f} s)", ok=ok))

    def parse() -> str:
        for f in (Path(__file__), REPO / "build_engines.py", REPO / "benchmarks" / "bench_streams.py"):
            ast.parse(f.read_text(), str(f))
        sh = REPO / "benchmarks" / "gpu_check.sh"
        subprocess.run(["bash", "-n", str(sh)], check=True, capture_output=True, timeout=30)
        return "gpu_check.py, build_engines.py, bench_streams.py, gpu_check.sh parse"

    def gpu() -> str:
        name = gpu_name()
        return f"GPU: {name}" if name else "no GPU here (the real check stops at this step)"

    def extras() -> str:
        return "extras " + ", ".join(GPU_EXTRAS) + ": " + ", ".join(check_extras())

    def clips() -> str:
        made = []
        for label, size in SIZES.items():
            p = make_clip(tmp / f"dry_{label}.mp4", size, 2)
            first = next(common.read_frames(p, 1))
            if (first.width, first.height) != size:
                raise RuntimeError(f"{p.name} decodes as {first.width}x{first.height}")
            made.append(f"{label} {size[0]}x{size[1]}")
        return "made " + ", ".join(made) + " (2 frames each)"

    def configs() -> str:
        for method in ("solid", "generate"):
            cfg = gpu_config(method, ns.engine_dir)  # validated by the config's own checks
            if (cfg.detect.backend, cfg.io.hwaccel, cfg.io.encoder) != ("tensorrt", "cuda", "auto"):
                raise RuntimeError(f"GPU config of {method} is {cfg.detect.backend}/{cfg.io.hwaccel}/{cfg.io.encoder}")
        return "GPU run configs valid: --backend tensorrt --precision fp16 --hwaccel cuda --encoder auto"

    def engines() -> str:
        for name, cmd in engine_commands(tmp / "engines", export_only=True).items():
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"{name}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            if "profile" not in r.stderr:
                raise RuntimeError(f"{name}: no profile chosen: {r.stderr.strip()[-200:]}")
        return "build commands valid (--export-only): " + ", ".join(engine_commands(tmp / "engines"))

    def streams() -> str:
        url = "rtsp://127.0.0.1:8554/file"
        cfg = streams_toml(tmp / "streams.toml", url, ns.feeds, 9100, tmp, tmp / "reports", gpu_video=False)
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run(
            [sys.executable, "-m", "streamanon", "streams", str(cfg), "--check"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        if r.returncode != 0:
            raise RuntimeError(f"streams --check: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        sys.path.insert(0, str(REPO / "tests" / "live"))
        from live_helpers import gst_missing

        why = gst_missing()
        import bench_streams as bs

        for name in ("source_clip", "GstServer", "free_port", "_scrape", "_per_feed", "_wait_all_writing"):
            if not hasattr(bs, name):
                raise RuntimeError(f"bench_streams.py has no {name} (the streams step uses it)")
        return f"{ns.feeds}-feed TOML valid (with software video here); RTSP server: {why or 'available'}"

    def reference() -> str:
        clip = common.prefix_clip(common.DATA / SOURCE, ns.dry_frames, tmp / "prefix")
        ref = run_file(clip, tmp / "ref.mp4", cpu_config("onnxruntime"))
        cand = run_file(clip, tmp / "cand.mp4", cpu_config("openvino"))
        cmp = compare(ref, cand, cpu_config())
        faces = sum(int((d.score >= cpu_config().detect.threshold).sum()) for d in ref.raw.values())
        if not cmp.ok:
            raise RuntimeError(f"CPU vs CPU: {cmp.summary()}")
        if not faces:
            raise RuntimeError("the reference found no face: the comparison would prove nothing")
        return f"CPU reference on {ref.frames} frames ({faces} faces): ORT vs OpenVINO fp32 {cmp.summary()}"

    for name, fn in (
        ("parse", parse),
        ("gpu", gpu),
        ("extras", extras),
        ("clips", clips),
        ("configs", configs),
        ("engines", engines),
        ("streams", streams),
        ("cpu-ref+compare", reference),
    ):
        step(name, fn)
    return rows


def full_run(ns: argparse.Namespace, tmp: Path) -> list[Row]:
    """Every step on the GPU; a step that raises ends the run with a failed row (one line,
    no traceback) after the rows of the steps before it."""
    rows: list[Row] = []
    name = gpu_name()
    if name is None:
        print("gpu_check: no NVIDIA GPU (nvidia-smi) here; use --dry-run", file=sys.stderr)
        raise SystemExit(2)
    print(f"GPU: {name}", flush=True)
    step = "clips"
    try:
        clips = {
            "1080p": make_clip(tmp / "1080p.mp4", SIZES["1080p"], ns.frames),
            "4k": make_clip(tmp / "4k.mp4", SIZES["4k"], ns.frames_4k),
        }
        step = "engines"
        if not build_engines(ns.engine_dir, rows):
            return rows
        for label, clip in clips.items():
            step = f"file-{label}"
            ref = file_steps(label, clip, ns, tmp, rows)
            if label == "1080p":
                step = "generate-1080p"
                generate_step(clip, ref, ns, tmp, rows)
        step = f"streams-{ns.feeds}x1080p"
        rows.append(streams_step(ns, tmp))
    except Exception as exc:  # reported in the table, exit 1
        rows.append(Row(step, result=f"FAILED: {type(exc).__name__}: {exc}", ok=False))
    return rows


def build_engines(engine_dir: Path, rows: list[Row]) -> bool:
    """The TensorRT engines, timed (one row each); False when a build failed."""
    engine_dir.mkdir(parents=True, exist_ok=True)
    for model, cmd in engine_commands(engine_dir).items():
        t0 = time.perf_counter()
        with GpuMemory(True) as mem:
            r = subprocess.run(cmd, capture_output=True, text=True)
        ok = r.returncode == 0
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        rows.append(
            Row(f"engine {model}", gpu_mib=mem.peak, build_s=time.perf_counter() - t0, result=last[-60:], ok=ok)
        )
        if not ok:
            return False
    return True


def file_steps(label: str, clip: Path, ns: argparse.Namespace, tmp: Path, rows: list[Row]) -> Recorded:
    """File mode on the GPU against the CPU reference of the same clip; returns the reference."""
    cpu = cpu_config()
    with GpuMemory(True) as mem:
        rec = run_file(clip, tmp / f"gpu_{label}.mp4", gpu_config(engine_dir=ns.engine_dir))
    ref = run_file(clip, tmp / f"cpu_{label}.mp4", cpu)
    row = file_row(f"file-{label}", rec, ref, cpu, need_gpu_video=True)
    row.gpu_mib = mem.peak
    rows.append(row)
    rows.append(Row(f"cpu-ref-{label}", ref.fps, _ms(ref.call_ms), result="reference (ONNX Runtime fp32)"))
    return ref


def generate_step(clip: Path, ref: Recorded, ns: argparse.Namespace, tmp: Path, rows: list[Row]) -> None:
    """``--method generate`` on the GPU over the clip's first frames, against the CPU
    reference already run on the whole clip (its first frames: ``first_frames``)."""
    cpu = cpu_config()
    gen_clip = common.prefix_clip(clip, ns.frames_generate, tmp / "prefix")
    with GpuMemory(True) as mem:
        g = run_file(gen_clip, tmp / "gpu_generate.mp4", gpu_config("generate", ns.engine_dir))
    row = file_row("generate-1080p", g, first_frames(ref, ns.frames_generate), cpu, need_gpu_video=True)
    gen_backend = str(g.anonymizer.get("generator_backend"))
    if "tensorrt" not in gen_backend:
        row.ok = False
        row.result += f"; generator not on TensorRT ({gen_backend})"
    faces = sum(len(d) for d in g.masked.values()) / max(1, g.frames)
    row.result += f"; {faces:.1f} faces/frame"
    row.gpu_mib = mem.peak
    rows.append(row)


def first_frames(rec: Recorded, n: int) -> Recorded:
    """``rec`` cut to its first ``n`` frames: the reference of a run on the clip's prefix
    (``common.prefix_clip``: the first ``n`` packets; ``make_clip``'s ultrafast preset has
    no B-frames, so they are the first ``n`` frames). File mode with every frame detected
    is causal (no frame's result depends on a later frame), so these are the records a
    run on the prefix makes. Timings are not cut: they are the whole clip's."""

    def head(d: dict[int, Detections]) -> dict[int, Detections]:
        return {i: v for i, v in d.items() if i < n}

    return replace(rec, raw=head(rec.raw), masked=head(rec.masked), frames=min(n, rec.frames))


def streams_step(ns: argparse.Namespace, tmp: Path) -> Row:
    with GpuMemory(True) as mem:
        try:
            s = run_streams(ns.feeds, ns.seconds, ns.engine_dir, tmp)
        except Exception as exc:  # reported, exit 1
            return Row(f"streams-{ns.feeds}x1080p", result=f"FAILED: {exc}", ok=False)
    ok = s["feeds_writing"] == ns.feeds and s["exit"] in (0, 130, -15)
    lat = f"{s['latency_ms'][0]:.0f}/{s['latency_ms'][1]:.0f}" if s["latency_ms"] else ""
    result = f"{s['feeds_writing']}/{ns.feeds} feeds writing, worst drop rate {100 * s['drop_rate']:.1f}%"
    if not ok:
        result += f"; FAILED (exit {s['exit']}): {s['stderr'].strip().splitlines()[-1:]}"
    return Row(f"streams-{ns.feeds}x1080p", s["fps"], lat, mem.peak, result=result, ok=ok)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="the plan and every check that needs no GPU")
    p.add_argument("--frames", type=int, default=600, help="frames of the 1080p clip")
    p.add_argument("--frames-4k", type=int, default=200, help="frames of the 4K clip")
    p.add_argument("--frames-generate", type=int, default=200, help="frames of --method generate")
    p.add_argument("--dry-frames", type=int, default=3, help="frames of the dry run's CPU vs CPU comparison")
    p.add_argument("--feeds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds of the streams step")
    p.add_argument("--engine-dir", type=Path, default=REPO / "engines")
    p.add_argument("--keep", type=Path, help="keep the clips and outputs in this folder")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    print("gpu_check plan:" + ("  (dry run: nothing below runs on a GPU)" if ns.dry_run else ""))
    for i, line in enumerate(plan(ns), 1):
        print(f"  {i}. {line}")
    sys.stdout.flush()
    ctx = tempfile.TemporaryDirectory(prefix="gpu_check.")
    tmp = Path(ctx.name) if ns.keep is None else ns.keep
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        rows = dry_run(ns, tmp) if ns.dry_run else full_run(ns, tmp)
    finally:
        ctx.cleanup()
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print_table(rows, f"gpu_check {'dry run' if ns.dry_run else gpu_name()} (load {load})")
    return verdict(rows)


def verdict(rows: Sequence[Row]) -> int:
    """0 when every step passed, 1 on any mismatch, leak or failure (printed)."""
    bad = [r.step for r in rows if not r.ok]
    if bad:
        print(f"gpu_check: FAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    print("gpu_check: all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
