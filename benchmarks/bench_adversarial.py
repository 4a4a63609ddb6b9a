"""Speed of ``--method adversarial`` and ``--method generate --adversarial``: per-face
milliseconds and end-to-end fps.

* per face: the anonymiser alone on the first ``--frames`` frames of a shared clip (faces
  from the product's detector, one track per face), for 1 and 3 PGD steps a frame: the
  first frame of the track (``COLD_STEPS`` from scratch) and the warm frames after it,
  in process CPU milliseconds per face (torch threads ``--threads``, default 1: on a shared
  machine wall time measures the neighbours), with the white-box distance the method
  reaches (torch port of dlib's ResNet, at its own landmarks) and how often it is past 0.6;
* end to end: ``streamanon CLIP --method adversarial`` (detector, tracker, encoder) on the
  same frames: frames per second of wall time.

``--methods adversarial,generate-adversarial`` (default both): the second is the generator
followed by the perturbation of the generated face (its per-face ms include the generator).

    python benchmarks/bench_adversarial.py [--clip videos/NAME] [--frames 30] [--threads 1] [--methods M,M]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA

from streamanon.anonymize import AnonymizerFactory, FrameInfo
from streamanon.config import AnonymizeConfig, DetectConfig, PipelineConfig
from streamanon.detect import create_detector
from streamanon.types import Detections

log = logging.getLogger("bench_adversarial")
DEFAULT_CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"


def _frames(path: Path, n: int) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) >= n:
                break
    return out


def _trim(src: Path, dst: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(dst), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return dst


METHODS = {
    "adversarial": {"method": "adversarial"},
    "generate-adversarial": {"method": "generate", "generate_adversarial": True},
}


def per_face(
    frames: list[np.ndarray], dets: list[Detections], steps: int, epsilon: float | None, method: str = "adversarial"
) -> dict[str, Any]:
    """CPU ms per face of the cold first frame and of the warm frames, and what they reach."""
    cfg = AnonymizeConfig(adv_steps=steps, epsilon=epsilon, seed=0, **METHODS[method])  # type: ignore[arg-type]
    factory = AnonymizerFactory(cfg)
    an = factory()
    ids: set[int] = set()
    cold: list[float] = []
    warm: list[float] = []
    for i, (img, d) in enumerate(zip(frames, dets, strict=True)):
        for t in sorted(set(d.track_id.tolist()) - ids):
            an.track_started(int(t), FrameInfo(i))
        ids |= set(d.track_id.tolist())
        t0 = time.process_time()
        an.apply(img, d, FrameInfo(i))
        ms = (time.process_time() - t0) * 1000 / max(1, len(d))
        (cold if i == 0 else warm).append(ms)
    for t in sorted(ids):
        an.track_ended(int(t), FrameInfo(len(frames)))
    rep = an.report()
    rep = rep.get("adversarial", rep)  # generate --adversarial: the perturbation's part
    tracks = rep["per_track"]
    met = sum(r["objective_met"] for r in tracks)
    return {
        "method": method,
        "steps": steps,
        "epsilon": rep["epsilon"],
        "faces": rep["perturbed_faces"],
        "cold_ms_per_face": round(float(np.mean(cold)), 1) if cold else None,
        "warm_ms_per_face": round(float(np.mean(warm)), 1) if warm else None,
        "objective_met": round(met / max(1, rep["perturbed_faces"]), 3),
        "distance_mean": round(float(np.mean([r["distance_mean"] for r in tracks])), 3),
        "distance_min": round(float(np.min([r["distance_min"] for r in tracks])), 3),
    }


def end_to_end(clip: Path, frames: list[np.ndarray], steps: int, method: str = "adversarial") -> dict[str, Any]:
    from streamanon.runner import process_file

    cfg = PipelineConfig(anonymize=AnonymizeConfig(adv_steps=steps, **METHODS[method]))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        src = _trim(clip, Path(tmp) / "in.mp4", frames)
        t0 = time.perf_counter()
        rep = process_file(src, Path(tmp) / "out.mp4", cfg, progress=False)
        wall = time.perf_counter() - t0
    return {
        "method": method,
        "steps": steps,
        "frames": rep.frames,
        "faces": rep.faces,
        "fps": round(rep.frames / wall, 2),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=DEFAULT_CLIP, help=f"clip under the data folder (default {DEFAULT_CLIP})")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--epsilon", type=float, default=None, help="L-inf bound in /255 (default: the method's)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown --methods {', '.join(bad)}: choose from {', '.join(METHODS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    clip = args.data / args.clip
    frames = _frames(clip, args.frames)
    detector = create_detector(DetectConfig(threads=1, backend="onnxruntime"))
    # one track per face (by order of size): a talking-head clip keeps its faces in place
    dets = []
    for img in frames:
        d = detector([img])[0]
        order = np.argsort(-d.area)
        d = d[order]
        dets.append(dataclasses.replace(d, track_id=np.arange(1, len(d) + 1, dtype=np.int64)))
    out: dict[str, Any] = {
        "clip": args.clip,
        "frames": len(frames),
        "torch_threads": args.threads,
        "per_face": [],
        "end_to_end": [],
    }
    for method in methods:
        for steps in (1, 3):
            r = per_face(frames, dets, steps, args.epsilon, method)
            log.info("per face, %s, %d steps: %s", method, steps, r)
            out["per_face"].append(r)
        r2 = end_to_end(clip, frames, 2, method)
        log.info("end to end, %s: %s", method, r2)
        out["end_to_end"].append(r2)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
