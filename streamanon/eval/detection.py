"""``eval detect``: the product's detector against ground-truth face boxes.

Detections are kept down to ``AP_FLOOR`` so that the AP curve is complete; precision and
recall are reported at each requested operating threshold, overall and per face-size
bucket (box height). Ignored faces (WIDER ``invalid``, imglab ``ignore``) and, with
``min_size``, faces smaller than that many pixels neither count as missed nor turn a
detection that hits them into a false positive (the WIDER FACE / COCO convention).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import DetectConfig
from ..detect import Detector, create_detector
from ..detect.tiles import TiledDetector  # every tile of every image (stills)
from ..errors import ConfigError
from .data import GroundTruth, iter_images
from .metrics import ImageDetections, evaluate_detections, face_height

log = logging.getLogger(__name__)

#: Lowest detector score kept for the AP curve.
AP_FLOOR = 0.05


def parse_det_sizes(text: str) -> list[int | str | None]:
    """``"480,640,native,auto"`` -> sizes; ``auto`` = the product default, ``native`` =
    each image's own long side (no resizing)."""
    out: list[int | str | None] = []
    for tok in (t.strip().lower() for t in text.split(",")):
        if not tok:
            continue
        if tok in ("auto", "native"):
            out.append(None if tok == "auto" else "native")
            continue
        try:
            v = int(tok)
        except ValueError:
            raise ConfigError(f"invalid --det-size {tok!r}: expected integers, 'auto' or 'native'") from None
        DetectConfig(det_size=v)  # validates the range
        out.append(v)
    if not out:
        raise ConfigError("no --det-size given")
    return out


def parse_thresholds(text: str) -> list[float]:
    """``"0.2,0.3"`` -> thresholds in (0, 1)."""
    out: list[float] = []
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        try:
            v = float(tok)
        except ValueError:
            raise ConfigError(f"invalid --threshold {tok!r}: expected numbers in (0, 1)") from None
        DetectConfig(threshold=v)  # validates the range
        out.append(v)
    if not out:
        raise ConfigError("no --threshold given")
    return sorted(set(out))


def size_label(det_size: int | str | None) -> str:
    return "auto" if det_size is None else str(det_size)


def _detector_at(size: int | str | None, base: DetectConfig, thresholds: Sequence[float]) -> Detector:
    """The product's detector at network size ``size`` (``base``'s other settings), scoring
    down to ``AP_FLOOR``; tiled as ``base`` asks."""
    cfg = DetectConfig(
        model=base.model,
        threshold=max(AP_FLOOR, min(thresholds)),
        det_size=size,  # type: ignore[arg-type]
        batch=1,
        providers=base.providers,
        threads=base.threads,
        backend=base.backend,
        precision=base.precision,
    )
    det: Detector = create_detector(cfg, low_threshold=AP_FLOOR)
    if base.small_faces != "off" or base.max_face_size is not None:
        det = TiledDetector(det, base.small_faces, base.tile_scale, base.tile_every, base.max_face_size, cfg.threshold)
    return det


def evaluate_detector(
    gts: Sequence[GroundTruth],
    det_size: int | str | None,
    thresholds: Sequence[float],
    *,
    base: DetectConfig | None = None,
    iou: float = 0.5,
    min_size: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the product's detector at one input size on every image and score it.

    Args:
        gts: ground truth per image (see ``load_annotations``).
        det_size: network long side, ``None`` (auto) or ``"native"``.
        thresholds: operating points for precision/recall.
        base: detector settings other than the size (model, providers, threads).
        iou: IoU for a match.
        min_size: faces whose height is below this many pixels are ignored.

    Returns:
        ``{"det_size", "images", "seconds", "overall": {...}, "buckets": {...}}``.
    """
    base = base or DetectConfig()
    detectors: dict[int | None, Detector] = {}
    items: list[ImageDetections] = []
    t0 = time.perf_counter()
    for k, (gt, image) in enumerate(iter_images(gts)):
        size = max(image.shape[:2]) if det_size == "native" else det_size
        if isinstance(size, int):
            size = max(32, min(4096, size))
        det = detectors.get(size)  # type: ignore[arg-type]
        if det is None:
            det = detectors[size] = _detector_at(size, base, thresholds)  # type: ignore[index]
        dets = det([image])[0]
        ignore = gt.ignore.copy()
        if min_size > 0:
            ignore |= face_height(gt.boxes) < min_size
        # On the scale the product thresholds: a reduced-precision backend's scores divided
        # by its margin (the product keeps score >= threshold * margin), so that recall at
        # a threshold is what the product finds at that --threshold. AP is unchanged.
        score = dets.score / float(getattr(det, "score_margin", 1.0))
        items.append(ImageDetections(gt.boxes, ignore, dets.xyxy, score, gt.name))
        if progress:
            progress(k)
    seconds = time.perf_counter() - t0
    result = evaluate_detections(items, thresholds, iou)
    return {
        "det_size": size_label(det_size),
        "small_faces": base.small_faces,
        "inference": next((str(c) for d in detectors.values() if (c := getattr(d, "choice", None))), "custom detector"),
        "images": len(items),
        "seconds": round(seconds, 2),
        "ms_per_image": round(1000 * seconds / max(1, len(items)), 1),
        **result,
    }


def dataset_stats(gts: Sequence[GroundTruth]) -> dict[str, Any]:
    """How many faces, ignored faces and faces per size bucket the ground truth has."""
    boxes = np.concatenate([g.boxes for g in gts]) if gts else np.zeros((0, 4), np.float32)
    ignore = np.concatenate([g.ignore for g in gts]) if gts else np.zeros(0, np.bool_)
    return {
        "images": len(gts),
        "faces": len(boxes),
        "ignored": int(ignore.sum()),
        "median_height": float(np.median(face_height(boxes))) if len(boxes) else None,
    }
