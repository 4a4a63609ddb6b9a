"""Probe: what does a reduced-precision backend cost in detections, and what does it buy?

Usage::

    python benchmarks/probe_precision.py                         # default clips, bf16 on OpenVINO
    python benchmarks/probe_precision.py --clips a.mp4 --frames 100 --precision bf16

For every clip, at streamanon's native network size with one non-spinning thread per call
(as the product runs each detector worker), frame by frame and interleaved:

* detector milliseconds per frame, fp32 (ONNX Runtime, the reference) vs the reduced
  precision (OpenVINO);
* the score ratio reduced/fp32 of each face fp32 scores in [0.2, 0.5) (matched at IoU >= 0.5):
  its low percentiles are what ``streamanon.backends.select.SCORE_MARGIN`` must cover;
* agreement: share of fp32's faces at threshold 0.2 found by the reduced model at 0.2 (no
  margin) and at 0.2 x margin (what the product runs), and the extra boxes the margin adds.

This is a measurement of the detector alone; coverage of the whole product against the
fp32 reference is ``bench_fps.py``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from probe_int8 import CLIPS, frames_of, iou_matrix, timing_row

from streamanon.backends.select import SCORE_MARGIN
from streamanon.config import DetectConfig
from streamanon.detect.centerface import CenterFaceDetector

THRESHOLD = 0.2


def compare(clip: Path, fp32: CenterFaceDetector, low: CenterFaceDetector, margin: float, n: int) -> dict[str, Any]:
    images = frames_of(clip, n)
    for det in (fp32, low):
        det([images[0]])  # warm-up (and compile for this shape)
    t32, tlow, ratios = [], [], []
    found = plain = kept = extra = 0
    for im in images:
        t = time.perf_counter()
        a = fp32([im])[0]
        t32.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = low([im])[0]  # scores down to the tracker's floor
        tlow.append(time.perf_counter() - t)
        found += len(a)
        b_kept = b.xyxy[b.score >= THRESHOLD * margin]
        if len(a) and len(b):
            iou = iou_matrix(a.xyxy, b.xyxy)
            best = iou.argmax(axis=1)
            hit = iou.max(axis=1) >= 0.5
            plain += int((hit & (b.score[best] >= THRESHOLD)).sum())
            kept += int((hit & (b.score[best] >= THRESHOLD * margin)).sum())
            near = hit & (a.score < 0.5)
            ratios += list(b.score[best][near] / a.score[near])
        if len(b_kept):
            extra += int((iou_matrix(b_kept, a.xyxy).max(axis=1) < 0.5).sum()) if len(a) else len(b_kept)
    r = np.asarray(ratios) if ratios else np.ones(1)
    return {
        **timing_row(clip, images, t32, tlow, "low"),
        "fp32_faces": found,
        "near_threshold_faces": len(ratios),
        "ratio_p1": round(float(np.percentile(r, 1)), 3),
        "ratio_p5": round(float(np.percentile(r, 5)), 3),
        "ratio_min": round(float(r.min()), 3),
        "agreement_no_margin": round(plain / found, 4) if found else None,
        "agreement_with_margin": round(kept / found, 4) if found else None,
        "extra_boxes_with_margin": extra,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="*", type=Path, default=[common.DATA / c for c in CLIPS])
    p.add_argument("--frames", type=int, default=100, help="frames per clip")
    p.add_argument("--precision", default="bf16", choices=sorted(SCORE_MARGIN))
    p.add_argument("--out", type=Path, default=common.RESULTS / "probe_precision.json")
    args = p.parse_args(argv)
    margin = SCORE_MARGIN[args.precision]
    fp32 = CenterFaceDetector(DetectConfig(threshold=THRESHOLD, threads=1, backend="onnxruntime"))
    # Scores down to 0.1 x margin, the floor the product's tracker reads.
    low = CenterFaceDetector(
        DetectConfig(threshold=THRESHOLD, threads=1, backend="openvino", precision=args.precision), low_threshold=0.1
    )
    rows = [compare(c, fp32, low, margin, args.frames) for c in args.clips]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"precision": args.precision, "margin": margin, "rows": rows}, indent=1))
    keys = list(rows[0]) if rows else []
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
