"""Probe: what the reduced-precision score margin costs in false positives, and what it buys.

Usage::

    python benchmarks/probe_margin.py                    # WIDER subset + the no-face clips
    python benchmarks/probe_margin.py --images 60 --frames 40 --margins 1 0.9 0.8

``streamanon.backends.select.SCORE_MARGIN`` multiplies the detection thresholds on a bf16
backend (0.2 becomes 0.2 x margin), because bf16 scores near-threshold faces lower than
fp32. A lower threshold also lets in more false positives. For every available precision
(fp32 on ONNX Runtime always; bf16 on OpenVINO where the CPU has native bfloat16) and every
margin, at the product's default threshold 0.2 and native size (the default ``auto`` size
for these images), the table gives:

* WIDER: recall, precision and false positives on the WIDER FACE val subset of the shared
  data (``detection_gt/widerface_val_subset``; WIDER ``invalid`` faces ignored, IoU 0.5);
* negatives: boxes per frame on the clips that show no face (``videos/negatives_no_faces``);
  every box there is a false positive (and, in a video, a track that masks for a while);
* agreement (the coverage side, reduced precision only): the share of the faces fp32 finds at
  0.2 on the video clips of ``probe_precision.py`` that the reduced precision finds at
  0.2 x margin (IoU >= 0.5). What the margin is for: without it bf16 lost 2-6% of them.

On fp32 the product applies no margin: the fp32 rows at margins < 1 show the threshold a
margin implies on fp32 scores. bf16 scores are lower than fp32's near the threshold, so
those rows bound what the margin adds on bf16 from above (in false positives and recall).
The bf16 rows are the measurement itself; they need a CPU with AVX512-BF16 or AMX.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from streamanon.backends.select import SCORE_MARGIN
from streamanon.config import DetectConfig
from streamanon.detect.centerface import CenterFaceDetector
from streamanon.eval.data import iter_images, load_annotations
from streamanon.eval.metrics import ImageDetections, evaluate_detections
from streamanon.track import box_iou
from streamanon.types import Detections

THRESHOLD = 0.2  # DetectConfig's default
FLOOR = 0.1  # scores kept, below every threshold probed
WIDER = "detection_gt/widerface_val_subset"
NEGATIVES = "videos/negatives_no_faces"
CLIPS = [  # probe_precision.py's: stage, street, crowd, talking head
    "videos/face_recognition__short_hamilton_clip.mp4",
    "videos/openpose__video.avi",
    "videos/dlib__MOT20-05-raw_even_shorter.mp4",
    "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4",
]


def detectors(check_with_fp32: bool = False) -> dict[str, CenterFaceDetector]:
    """fp32 (ONNX Runtime), and bf16 (OpenVINO) where this CPU runs it natively
    (``check_with_fp32``: OpenVINO fp32 in its place, to check this script without bf16)."""
    out = {"fp32": CenterFaceDetector(DetectConfig(threshold=FLOOR, backend="onnxruntime"), low_threshold=FLOOR)}
    from streamanon.backends.openvino import native_bf16

    if check_with_fp32:
        out["openvino-fp32"] = CenterFaceDetector(
            DetectConfig(threshold=FLOOR, backend="openvino", precision="fp32"), low_threshold=FLOOR
        )
    elif native_bf16():
        # the detector's own floor is FLOOR x margin: divide it out so every score >= FLOOR is kept
        bf16 = CenterFaceDetector(DetectConfig(threshold=FLOOR, backend="openvino", precision="bf16"))
        bf16.low_threshold = FLOOR / bf16.score_margin
        out["bf16"] = bf16
    else:
        print("bf16: not measured, this CPU has no native bfloat16 (AVX512-BF16 or AMX)", flush=True)
    return out


def wider_items(det: CenterFaceDetector, n: int) -> list[ImageDetections]:
    root = common.DATA / WIDER
    gts = load_annotations(root / "wider_face_val_bbx_gt__subset.txt", root / "images")
    if n:
        gts = gts[:: max(1, len(gts) // n)][:n]
    items = []
    for gt, image in iter_images(gts):
        d = det([image])[0]
        items.append(ImageDetections(gt.boxes, gt.ignore, d.xyxy, d.score, gt.name))
    return items


def negative_frames(n: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for clip in sorted((common.DATA / NEGATIVES).iterdir()):
        with av.open(str(clip)) as c:
            stride = max(1, (c.streams.video[0].frames or 1000) // n)  # spread over the clip
            got = 0
            for i, f in enumerate(c.decode(video=0)):
                if i % stride:
                    continue
                frames.append(f.to_ndarray(format="rgb24"))
                got += 1
                if got >= n:
                    break
    return frames


def clip_frames(n: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for clip in CLIPS:
        with av.open(str(common.DATA / clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i >= n:
                    break
                frames.append(f.to_ndarray(format="rgb24"))
    return frames


def agreement(reference: list[Detections], dets: list[Detections], thresholds: list[float]) -> list[float | None]:
    """Per threshold: share of the reference's faces at THRESHOLD found at that threshold."""
    found = np.zeros(len(thresholds), np.int64)
    total = 0
    for ref, d in zip(reference, dets, strict=True):
        ref = ref[ref.score >= THRESHOLD]
        total += len(ref)
        if not len(ref) or not len(d):
            continue
        iou = box_iou(ref.xyxy, d.xyxy)
        for k, thr in enumerate(thresholds):
            found[k] += int((np.where(d.score[None, :] >= thr, iou, 0.0).max(axis=1) >= 0.5).sum())
    return [round(float(f) / total, 4) if total else None for f in found]


def probe(
    name: str,
    det: CenterFaceDetector,
    margins: list[float],
    n_images: int,
    n_frames: int,
    clips: list[np.ndarray],
    reference: list[Detections] | None,
) -> tuple[list[dict[str, Any]], list[Detections]]:
    t0 = time.perf_counter()
    items = wider_items(det, n_images)
    negs: list[Detections] = [det([im])[0] for im in negative_frames(n_frames)]
    on_clips = [det([im])[0] for im in clips]
    thresholds = [round(THRESHOLD * m, 6) for m in margins]
    wider = evaluate_detections(items, thresholds)["overall"]
    agree = agreement(reference, on_clips, thresholds) if reference is not None else [None] * len(thresholds)
    rows = []
    for m, thr, ag in zip(margins, thresholds, agree, strict=True):
        at = wider["at"][f"{thr:g}"]
        boxes = sum(int((d.score >= thr).sum()) for d in negs)
        rows.append(
            {
                "precision_mode": name,
                "margin": m,
                "threshold": thr,
                "wider_images": len(items),
                "wider_faces": wider["faces"],
                "recall": round(at["recall"], 4),
                "precision": round(at["precision"], 4) if at["precision"] is not None else None,
                "tp": at["tp"],
                "fp": at["fp"],
                "negative_frames": len(negs),
                "negative_boxes": boxes,
                "negative_boxes_per_frame": round(boxes / max(1, len(negs)), 4),
                "clip_frames": len(clips),
                "agreement_with_fp32": ag,  # None: this is the fp32 reference
            }
        )
    print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows, on_clips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=0, help="WIDER images (0: all 198 of the subset)")
    p.add_argument("--frames", type=int, default=60, help="frames sampled per negative clip")
    p.add_argument("--clip-frames", type=int, default=60, help="first frames of each clip for the agreement")
    p.add_argument("--check-with-fp32", action="store_true", help="OpenVINO fp32 in bf16's place (script check)")
    p.add_argument("--margins", type=float, nargs="*", default=sorted({1.0, 0.9, *SCORE_MARGIN.values()}, reverse=True))
    p.add_argument("--out", type=Path, default=common.RESULTS / "probe_margin.json")
    args = p.parse_args(argv)
    clips = clip_frames(args.clip_frames)
    rows: list[dict[str, Any]] = []
    reference: list[Detections] | None = None
    for name, det in detectors(args.check_with_fp32).items():  # fp32 first: the reference
        got, on_clips = probe(name, det, args.margins, args.images, args.frames, clips, reference)
        rows += got
        reference = reference or on_clips
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"score_margin": SCORE_MARGIN, "rows": rows}, indent=1))
    cols = ["precision_mode", "margin", "threshold", "recall", "precision", "tp", "fp", "negative_boxes_per_frame"]
    cols.append("agreement_with_fp32")
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    if rows:
        r = rows[0]
        print(
            f"({r['wider_images']} WIDER images, {r['wider_faces']} faces; {r['negative_frames']} no-face frames; "
            f"agreement on {r['clip_frames']} clip frames)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
