"""Throughput, coverage and memory: streamanon vs deface vs a plain transcode, per clip.

Usage::

    python benchmarks/bench_fps.py                      # every clip in ../shared/data/videos
    python benchmarks/bench_fps.py --clips a.mp4 b.mkv --max-frames 300 --out results.json
    python benchmarks/bench_fps.py --variants sa sa:every=3 --sweep every=1,2,3,4 det=auto,full

Each run happens in a fresh child process (so that peak RSS is per run); variants run in
an order that rotates from clip to clip (and reverses on every repeat) after one untimed
warm-up round, so that neither thermal state nor caches favour a variant. Throughput is
frames / processing seconds inside the child: interpreter start and model load are not
counted for anyone (the detector runs once on the first frame before the clock starts).

Variants:

* ``transcode``: PyAV decode → libx264 encode with streamanon's IOConfig settings
  (crf 18, preset veryfast, yuv420p), frames passed as decoded (no RGB, no model).
* ``transcode-rgb``: the same with the YUV→RGB→YUV conversions streamanon's I/O does.
* ``deface``: ``deface.deface.video_detect`` (v1.5, its defaults: threshold 0.2, full
  resolution, blur, ellipse, mask scale 1.3) with the same encoder settings through
  imageio-ffmpeg.
* ``sa[:key=value,...]``: ``streamanon.runner.process_file`` with ``PipelineConfig()``
  overridden by ``every``, ``det`` (int, ``auto`` or ``full``), ``thr``, ``batch``,
  ``threads``, ``workers``, ``backend`` (``onnxruntime``, ``openvino``, ...), ``prec``
  (``fp32``, ``bf16``, ...), ``method`` (any ``--method``) with its parameters ``eps``,
  ``cells``, ``k``, ``svdk``, ``bank`` (a face-bank folder); ``sa:rec`` is the recommended
  configuration of this benchmark (``sa:rec,every=3``: the same with an override).
  Variants with a ``method`` other than solid are timed end to end around ``process_file``
  (k-same's first pass over the clip included) and skip coverage: every method replaces
  the same masks. ``ovasync=0|1`` runs OpenVINO's calls serialised under a lock or
  concurrently through its asynchronous API (default: ``openvino.CONCURRENT_CALLS``).

Coverage: share of reference faces (streamanon's detector on every frame at full
resolution, threshold 0.2; cached) whose box lies >= 90 % inside the pixels really
anonymised on that frame. For deface the pixels are computed from its own CenterFace
class and mask geometry on the same decoded frames (its output cannot be compared
frame-by-frame: imageio resamples the frame rate and re-encodes, and its detections are
not exported).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from streamanon.config import PipelineConfig

log = logging.getLogger("bench_fps")

DEFAULT_VARIANTS = ["transcode", "transcode-rgb", "deface", "sa", "sa:every=1", "sa:rec"]
# The configuration this benchmark recommends as default (see README of the issue).
RECOMMENDED = {"every": "1", "det": "full", "thr": "0.2", "batch": "1"}


# -- configurations --------------------------------------------------------------------
def sa_config(spec: str) -> PipelineConfig:
    """``PipelineConfig()`` with the overrides of an ``sa:k=v,...`` variant."""
    opts: dict[str, str] = {}
    if ":" in spec:
        body = spec.split(":", 1)[1]
        if body.startswith("rec"):
            opts, body = dict(RECOMMENDED), body[3:]
        opts.update((kv.split("=", 1)[0], kv.split("=", 1)[1]) for kv in body.split(",") if kv)
    cfg = PipelineConfig()
    det, track, anon = cfg.detect, cfg.track, cfg.anonymize
    for key, fld, kind in (
        ("method", "method", str),
        ("eps", "epsilon", float),
        ("cells", "dp_cells", int),
        ("k", "k", int),
        ("svdk", "svd_k", int),
        ("bank", "face_bank", str),
    ):
        if key in opts:
            change: dict[str, Any] = {fld: kind(opts[key])}
            anon = replace(anon, **change)
    if "every" in opts:
        track = replace(track, detect_every=int(opts["every"]))
    if "det" in opts:
        # auto and full are both the product's native size (every side rounded up to 32)
        det = replace(det, det_size=None if opts["det"] in ("auto", "full") else int(opts["det"]))
    if "thr" in opts:
        det = replace(det, threshold=float(opts["thr"]))
    if "batch" in opts:
        det = replace(det, batch=int(opts["batch"]))
    if "threads" in opts:
        det = replace(det, threads=int(opts["threads"]))
    if "workers" in opts:
        det = replace(det, workers=int(opts["workers"]))
    if "backend" in opts:
        det = replace(det, backend=opts["backend"])  # type: ignore[arg-type]
    if "prec" in opts:
        det = replace(det, precision=opts["prec"])  # type: ignore[arg-type]
    return replace(cfg, detect=det, track=track, anonymize=anon)


# -- child runs --------------------------------------------------------------------------
def openvino_calls(spec: str) -> bool | None:
    """The ``ovasync=0|1`` knob of an ``sa:`` variant (None: not given)."""
    m = re.search(r"[:,]ovasync=([01])(?=,|$)", spec)
    return None if m is None else m.group(1) == "1"


def child(variant: str, clip: Path, out_dir: Path) -> dict[str, Any]:
    """One timed run in this (fresh) process; returns its measurements."""
    concurrent = openvino_calls(variant)
    if concurrent is not None:  # a process-wide default, set before any backend exists
        from streamanon.backends import openvino

        openvino.CONCURRENT_CALLS = concurrent
    if variant.startswith("transcode"):
        return _transcode(clip, out_dir / "transcode.mp4", rgb=variant == "transcode-rgb")
    if variant == "deface":
        return _deface(clip, out_dir / "deface.mp4")
    return _streamanon(variant, clip, out_dir / "sa.mp4")


def _transcode(clip: Path, dst: Path, rgb: bool) -> dict[str, Any]:
    import av

    from streamanon.config import IOConfig

    io = IOConfig()
    t0 = time.perf_counter()
    n = 0
    with av.open(str(clip)) as src, av.open(str(dst), "w") as out:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        vout: Any = out.add_stream(
            io.codec, rate=vin.average_rate or 25, options={"crf": str(io.crf), "preset": io.preset}
        )
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.time_base = vout.codec_context.time_base = vin.time_base or Fraction(1, 90000)
        last = -1
        for frame in src.decode(vin):
            if rgb:
                pts, tb = frame.pts, frame.time_base
                frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                frame.pts, frame.time_base = pts, tb
            else:
                frame.pict_type = av.video.frame.PictureType.NONE
            frame.pts = max(last + 1, frame.pts if frame.pts is not None else last + 1)
            last = frame.pts
            for p in vout.encode(frame):
                out.mux(p)
            n += 1
        for p in vout.encode(None):
            out.mux(p)
    seconds = time.perf_counter() - t0
    return {"frames": n, "seconds": seconds, "fps": n / seconds, "peak_rss_mib": common.peak_rss_mib()}


def _deface(clip: Path, dst: Path) -> dict[str, Any]:
    import av
    import numpy as np
    from deface.centerface import CenterFace
    from deface.deface import video_detect

    from streamanon.config import IOConfig

    io = IOConfig()
    with common._quiet_stdout():
        cf = CenterFace()
        first = next(common.read_frames(clip, 1))
        cf(np.ascontiguousarray(first.image), threshold=common.DEFACE_THRESHOLD)  # warm-up
        ffmpeg = {
            "codec": io.codec,
            "quality": None,
            "macro_block_size": 2,
            "output_params": ["-crf", str(io.crf), "-preset", io.preset],
        }
        devnull = open(os.devnull, "w")
        old_err, sys.stderr = sys.stderr, devnull
        try:
            t0 = time.perf_counter()
            video_detect(
                ipath=str(clip),
                opath=str(dst),
                centerface=cf,
                threshold=common.DEFACE_THRESHOLD,
                enable_preview=False,
                cam=False,
                nested=False,
                replacewith="blur",
                mask_scale=common.DEFACE_MASK_SCALE,
                ellipse=True,
                draw_scores=False,
                ffmpeg_config=ffmpeg,
                keep_audio=False,
            )
            seconds = time.perf_counter() - t0
        finally:
            sys.stderr = old_err
            devnull.close()
    rss = common.peak_rss_mib()
    with av.open(str(dst)) as c:
        n = sum(1 for _ in c.demux(video=0) if _.size)
    return {"frames": n, "seconds": seconds, "fps": n / seconds, "peak_rss_mib": rss}


def _streamanon(variant: str, clip: Path, dst: Path) -> dict[str, Any]:
    import numpy as np

    from streamanon.anonymize import create_anonymizer
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file
    from streamanon.types import Detections

    first = next(common.read_frames(clip, 1))
    cfg = sa_config(variant)
    if cfg.anonymize.method != "solid":
        return _streamanon_method(cfg, clip, dst, first)

    class Recording:
        """The configured anonymiser, remembering the regions of every frame (coverage)."""

        name = "recording"

        def __init__(self) -> None:
            self.inner = create_anonymizer(cfg.anonymize)
            self.dets: list[Detections] = []

        def apply(self, image: np.ndarray, dets: Detections) -> np.ndarray:
            self.dets.append(dets)
            out: np.ndarray = self.inner.apply(image, dets)
            return out

    rec = Recording()
    stages = Stages(cfg, anonymizer=rec)
    stages.detector([first.image])  # warm-up
    report = process_file(clip, dst, cfg, stages=stages, report_frames=False)
    rss = common.peak_rss_mib()
    out: dict[str, Any] = {
        "frames": report.frames,
        "seconds": report.seconds,
        "fps": report.frames / report.seconds,
        "peak_rss_mib": rss,
        "stage_seconds": report.stage_seconds,
        "frames_failed": report.frames_failed,
        "config": {"detect": asdict(cfg.detect), "detect_every": cfg.track.detect_every},
        "inference": stages.inference,
    }
    ref = common.reference(clip)
    if report.frames_failed == 0:
        cov = common.region_coverage(ref, rec.dets, (first.width, first.height), cfg.anonymize)
        out.update(cov.to_dict())
    return out


def _streamanon_method(cfg: PipelineConfig, clip: Path, dst: Path, first: Any) -> dict[str, Any]:
    """A method variant, timed around the whole ``process_file`` (both passes of k-same)."""
    import time

    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    stages = Stages(cfg)
    stages.detector([first.image])  # warm-up
    t0 = time.perf_counter()
    report = process_file(clip, dst, cfg, stages=stages, report_frames=False)
    wall = time.perf_counter() - t0
    return {
        "frames": report.frames,
        "seconds": wall,
        "fps": report.frames / wall,
        "peak_rss_mib": common.peak_rss_mib(),
        "stage_seconds": report.stage_seconds,
        "frames_failed": report.frames_failed,
        "anonymize_ms_per_frame": 1000 * report.stage_seconds.get("anonymize", 0.0) / max(1, report.frames),
        "faces": report.faces,
        "fallback": (report.anonymizer.get("fallback") or {}).get("why"),
        "config": {"anonymize": asdict(cfg.anonymize)},
        "inference": stages.inference,
    }


def run_child(variant: str, clip: Path, timeout: float) -> dict[str, Any]:
    """Run ``variant`` on ``clip`` in a fresh interpreter and parse its JSON answer."""
    with tempfile.TemporaryDirectory(prefix="bench_fps.") as tmp:
        cmd = [sys.executable, __file__, "--child", variant, str(clip), "--workdir", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result


# -- the benchmark -----------------------------------------------------------------------
def bench(
    clips: list[Path], variants: list[str], max_frames: int, repeats: int, timeout: float
) -> list[dict[str, Any]]:
    work = common.RESULTS / "prefix"
    rows = []
    prepared = [(c, common.prefix_clip(c, max_frames, work)) for c in clips]
    for _, p in prepared:  # the slow part, cached: reference and deface's regions
        common.reference(p)
    if prepared:  # warm-up round (untimed): page cache, CPU clocks
        for v in variants:
            run_child(v, prepared[0][1], timeout)
    for i, (orig, path) in enumerate(prepared):
        first = next(common.read_frames(path, 1))
        row: dict[str, Any] = {"clip": orig.name, "size": f"{first.width}x{first.height}", "runs": {}}
        ref = common.reference(path)
        row["reference_faces"] = sum(len(d) for d in ref)
        timings: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(repeats):
            order = variants[i % len(variants) :] + variants[: i % len(variants)]
            for v in order if r % 2 == 0 else order[::-1]:
                timings[v].append(run_child(v, path, timeout))
        for v, runs in timings.items():
            ok = [x for x in runs if "error" not in x]
            if not ok:
                row["runs"][v] = runs[0]
                continue
            best = sorted(ok, key=lambda x: x["fps"])[len(ok) // 2]  # median run
            row["runs"][v] = best | {"fps_all": [round(x["fps"], 2) for x in ok]}
        if "deface" in variants:
            row["runs"].setdefault("deface", {}).update(_deface_coverage(path, ref).to_dict())
        rows.append(row)
        log.info("%s done", orig.name)
        print(format_row(row, variants), flush=True)
    return rows


def _deface_coverage(path: Path, ref: list[Any]) -> common.Coverage:
    cov = common.Coverage()
    for i, (mask, r) in enumerate(zip(common.deface_masks(path), ref, strict=True)):
        cov.add(i, r, mask)
    return cov


def format_row(row: dict[str, Any], variants: list[str]) -> str:
    runs = row["runs"]

    def fps(v: str) -> float:
        return float(runs.get(v, {}).get("fps", float("nan")))

    parts = [f"{row['clip'][:38]:38s} {row['size']:>9s}"]
    for v in variants:
        r = runs.get(v, {})
        if "error" in r:
            parts.append(f"{v}: ERROR {r['error'][:60]}")
            continue
        s = f"{v}: {fps(v):6.1f} fps"
        if v.startswith("sa"):
            s += f" x{fps(v) / fps('deface'):.2f} deface x{fps(v) / fps('transcode'):.2f} transcode"
        if "coverage" in r:
            s += f" cov {100 * r['coverage']:.2f}%"
        if "peak_rss_mib" in r:
            s += f" rss {r['peak_rss_mib']:.0f}M"
        parts.append(s)
    return "\n    ".join(parts)


def sweep(clips: list[Path], max_frames: int, everys: list[int], dets: list[str], thr: float) -> list[dict[str, Any]]:
    """Coverage of detect-every-N x detection size, replaying cached detections through
    the real Pipeline (scheduling, scene cuts, tracker, look-back). No timing."""
    from streamanon.config import TrackConfig

    out = []
    for orig in clips:
        path = common.prefix_clip(orig, max_frames, common.RESULTS / "prefix")
        frames = list(common.read_frames(path))
        if not frames:
            continue
        w, h = frames[0].width, frames[0].height
        ref = common.reference(path)
        for det in dets:
            cfg0 = sa_config(f"sa:det={det},thr={thr}")
            cached = common.detect_all(path, cfg0.detect.det_size, PipelineConfig().track.low_threshold)
            for every in everys:
                cfg = replace(cfg0, track=replace(TrackConfig(), detect_every=every))
                detector = common.CachedDetector(frames, cached)
                regions, _stats = common.pipeline_dets(frames, cfg, detector)
                cov = common.region_coverage(ref, regions, (w, h), cfg.anonymize)
                rec = {
                    "clip": orig.name,
                    "det": det,
                    "det_size": cfg0.detect.det_size or "native",
                    "every": every,
                    "detector_runs": detector.calls,
                    "frames": len(frames),
                }
                out.append(rec | cov.to_dict())
                print(
                    f"{orig.name[:38]:38s} det={det:>4s} every={every}: coverage {100 * cov.ratio:6.2f}% "
                    f"({cov.covered}/{cov.total}) detector on {detector.calls}/{len(frames)} frames",
                    flush=True,
                )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="*", type=Path, help="clips (default: every video in the shared data)")
    p.add_argument("--max-frames", type=int, default=300, help="cut longer clips to their first N frames (0: all)")
    p.add_argument("--out", type=Path, default=common.RESULTS / "bench_fps.json", help="JSON results")
    p.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, help=f"default: {' '.join(DEFAULT_VARIANTS)}")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per variant and clip (median reported)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per child run")
    p.add_argument(
        "--sweep", nargs="*", metavar="KEY=V1,V2", help="coverage-only sweep, e.g. every=1,2,3 det=auto,full thr=0.2"
    )
    p.add_argument("--child", nargs=2, metavar=("VARIANT", "CLIP"), help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if ns.child:
        print(json.dumps(child(ns.child[0], Path(ns.child[1]), ns.workdir)))
        return 0
    clips = ns.clips or common.default_clips()
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cores": common.cpu_threads(), "max_frames": ns.max_frames, "load_avg_start": os.getloadavg()}
    if ns.sweep is not None:
        opts = dict(kv.split("=", 1) for kv in ns.sweep)
        everys = [int(v) for v in opts.get("every", "1,2,3,4").split(",")]
        dets = opts.get("det", "auto,full").split(",")
        rows = sweep(clips, ns.max_frames, everys, dets, float(opts.get("thr", "0.2")))
        ns.out.write_text(json.dumps({"meta": meta, "sweep": rows}, indent=1))
        return 0
    rows = bench(clips, ns.variants, ns.max_frames, ns.repeats, ns.timeout)
    meta["load_avg_end"] = os.getloadavg()
    ns.out.write_text(json.dumps({"meta": meta, "variants": ns.variants, "clips": rows}, indent=1))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
