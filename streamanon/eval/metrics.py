"""Image quality (PSNR, SSIM, MS-SSIM; whole image or a masked region) and detection
precision/recall/AP.

SSIM follows Wang et al. 2004 on luma (BT.601): an 11-tap Gaussian window (sigma 1.5),
K1=0.01, K2=0.03, mean over pixels at least 5 px from the border (the same numbers as
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``). MS-SSIM follows Wang et al. 2003 (5 scales with the
published weights); images too small for 5 scales use as many as fit (the coarsest
scale must keep 11 px) with the weights renormalised. Masked variants average the maps
over the region's pixels only ("quality outside the faces"); for SSIM and MS-SSIM a pixel
counts only when its whole window lies in the region (the region is eroded by the window
radius at each scale), so pixels next to a mask do not see the masked pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..track.association import box_iou

#: PSNR reported for identical images (infinite PSNR is not valid JSON).
PSNR_IDENTICAL = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_SIGMA = 1.5
_TRUNCATE = 3.5  # -> 11-tap window
_PAD = 5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _luma(image: NDArray[Any]) -> NDArray[np.float64]:
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        return img
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8], region: NDArray[np.bool_] | None = None) -> float | None:
    """Peak signal-to-noise ratio in dB over all channels (``region``: pixels to use).

    Returns:
        PSNR in dB, ``PSNR_IDENTICAL`` when equal, ``None`` when the region is empty.
    """
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if region is not None:
        if not region.any():
            return None
        diff = diff[region]
    mse = float(np.mean(diff**2))
    if mse == 0:
        return PSNR_IDENTICAL
    return min(PSNR_IDENTICAL, 10.0 * math.log10(255.0**2 / mse))


def _ssim_maps(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Luminance term and contrast-structure term maps of SSIM."""

    def f(z: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = ndimage.gaussian_filter(z, _SIGMA, truncate=_TRUNCATE, mode="reflect")
        return out

    mx, my = f(x), f(y)
    vx = f(x * x) - mx * mx
    vy = f(y * y) - my * my
    cov = f(x * y) - mx * my
    lum = (2 * mx * my + _C1) / (mx * mx + my * my + _C1)
    cs = (2 * cov + _C2) / (vx + vy + _C2)
    return lum, cs


def _valid(shape: tuple[int, ...], region: NDArray[np.bool_] | None) -> NDArray[np.bool_]:
    """Pixels whose SSIM window lies inside the image and wholly inside ``region``."""
    v = np.zeros(shape[:2], np.bool_)
    if shape[0] > 2 * _PAD and shape[1] > 2 * _PAD:
        v[_PAD:-_PAD, _PAD:-_PAD] = True
    else:
        v[:] = True
    if region is None:
        return v
    kernel = np.ones((2 * _PAD + 1, 2 * _PAD + 1), np.uint8)
    inner = cv2.erode(region.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0
    return v & inner


def ssim(a: NDArray[np.uint8], b: NDArray[np.uint8], region: NDArray[np.bool_] | None = None) -> float | None:
    """Structural similarity of the luma of two images (``None`` for an empty region)."""
    x, y = _luma(a), _luma(b)
    lum, cs = _ssim_maps(x, y)
    valid = _valid(x.shape, region)
    if not valid.any():
        return None
    return float(np.mean((lum * cs)[valid]))


def _down2(z: NDArray[np.float64]) -> NDArray[np.float64]:
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    z = z[:h, :w]
    out: NDArray[np.float64] = (z[0::2, 0::2] + z[1::2, 0::2] + z[0::2, 1::2] + z[1::2, 1::2]) / 4.0
    return out


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit an image (coarsest scale keeps >= 11 px)."""
    n = 1
    side = min(height, width)
    while n < len(MS_SSIM_WEIGHTS) and side // 2 >= 11:
        side //= 2
        n += 1
    return n


def ms_ssim(a: NDArray[np.uint8], b: NDArray[np.uint8], region: NDArray[np.bool_] | None = None) -> float | None:
    """Multi-scale SSIM of the luma (``None`` for an empty region)."""
    x, y = _luma(a), _luma(b)
    n = ms_ssim_scales(*x.shape[:2])
    weights = np.array(MS_SSIM_WEIGHTS[:n], np.float64)
    weights /= weights.sum()
    reg = None if region is None else region.astype(np.float64)
    values: list[float] = []
    for j in range(n):
        lum, cs = _ssim_maps(x, y)
        valid = _valid(x.shape, None if reg is None else reg >= 1.0 - 1e-9)
        if not valid.any():
            return None if j == 0 else _combine(values, weights[: len(values)])
        term = (lum * cs) if j == n - 1 else cs
        values.append(max(0.0, float(np.mean(term[valid]))))
        if j < n - 1:
            x, y = _down2(x), _down2(y)
            reg = None if reg is None else _down2(reg)
    return _combine(values, weights)


def _combine(values: Sequence[float], weights: NDArray[np.float64]) -> float | None:
    if not values:
        return None
    w = weights / weights.sum()
    return float(np.prod([v**wi for v, wi in zip(values, w, strict=True)]))


def quality(
    original: NDArray[np.uint8], other: NDArray[np.uint8], face_mask: NDArray[np.bool_] | None = None
) -> dict[str, float | None]:
    """PSNR/SSIM/MS-SSIM of the whole image and (with ``face_mask``) outside the faces."""
    out: dict[str, float | None] = {
        "psnr": psnr(original, other),
        "ssim": ssim(original, other),
        "ms_ssim": ms_ssim(original, other),
    }
    if face_mask is not None:
        outside = ~face_mask
        out.update(
            psnr_outside=psnr(original, other, outside),
            ssim_outside=ssim(original, other, outside),
            ms_ssim_outside=ms_ssim(original, other, outside),
        )
    return out


def mean_of(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """Mean of ``row[key]`` over rows where it is not ``None``."""
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


# -- detection ------------------------------------------------------------------------
SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<16", 0.0, 16.0),
    ("16-32", 16.0, 32.0),
    ("32-64", 32.0, 64.0),
    ("64-128", 64.0, 128.0),
    (">=128", 128.0, math.inf),
)


def face_height(boxes: NDArray[np.float32]) -> NDArray[np.float64]:
    """Face size used for buckets: the box height in pixels (WIDER's convention)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.clip(b[:, 3] - b[:, 1], 0, None)


@dataclass
class ImageDetections:
    """Ground truth and detections of one image for :func:`evaluate_detections`."""

    gt: NDArray[np.float32]  # (N, 4) xyxy
    ignore: NDArray[np.bool_]  # (N,) GT that neither counts as a miss nor makes a match an FP
    boxes: NDArray[np.float32]  # (M, 4) xyxy detections
    scores: NDArray[np.float32]  # (M,)
    name: str = ""


@dataclass
class _Matched:
    scores: list[float] = field(default_factory=list)
    tp: list[bool] = field(default_factory=list)
    n_gt: int = 0


def _match(img: ImageDetections, iou_thr: float, size_range: tuple[float, float] | None, acc: _Matched) -> None:
    """Greedy matching by score (COCO style): ignored GT absorb detections without credit."""
    gt_ign = img.ignore.copy()
    if size_range is not None:
        hs = face_height(img.gt)
        gt_ign |= (hs < size_range[0]) | (hs >= size_range[1])
    acc.n_gt += int((~gt_ign).sum())
    order = np.argsort(-img.scores, kind="stable")
    iou = box_iou(img.boxes[order], img.gt) if len(img.gt) else np.zeros((len(order), 0))
    taken = np.zeros(len(img.gt), np.bool_)
    dh = face_height(img.boxes[order])
    for k, di in enumerate(order):
        cand = np.where(~gt_ign & ~taken, iou[k], -1.0)
        best_j = int(np.argmax(cand)) if len(cand) else -1
        if best_j >= 0 and cand[best_j] >= iou_thr:
            taken[best_j] = True
            acc.scores.append(float(img.scores[di]))
            acc.tp.append(True)
            continue
        if gt_ign.any() and (iou[k, gt_ign] >= iou_thr).any():
            continue  # matched an ignored face: neither TP nor FP
        if size_range is not None and not (size_range[0] <= dh[k] < size_range[1]):
            continue  # an unmatched detection of another size bucket
        acc.scores.append(float(img.scores[di]))
        acc.tp.append(False)


def average_precision(scores: Sequence[float], tp: Sequence[bool], n_gt: int) -> float | None:
    """All-point interpolated AP (PASCAL VOC 2010+); ``None`` when there is no GT."""
    if n_gt == 0:
        return None
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, np.float64)[order]
    ctp, cfp = np.cumsum(hits), np.cumsum(1 - hits)
    rec = ctp / n_gt
    prec = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _summary(acc: _Matched, thresholds: Sequence[float]) -> dict[str, Any]:
    s = np.asarray(acc.scores, np.float64)
    t = np.asarray(acc.tp, np.bool_)
    out: dict[str, Any] = {"faces": acc.n_gt, "ap": average_precision(acc.scores, acc.tp, acc.n_gt), "at": {}}
    for thr in thresholds:
        keep = s >= thr
        tp, fp = int((t & keep).sum()), int((~t & keep).sum())
        out["at"][f"{thr:g}"] = {
            "tp": tp,
            "fp": fp,
            "recall": tp / acc.n_gt if acc.n_gt else None,
            "precision": tp / (tp + fp) if tp + fp else None,
        }
    return out


def evaluate_detections(
    images: Sequence[ImageDetections], thresholds: Sequence[float], iou_thr: float = 0.5
) -> dict[str, Any]:
    """Precision/recall at each threshold and AP, overall and per face-size bucket.

    Args:
        images: per-image GT (with ignore flags) and scored detections; detections must
            go down to the lowest threshold of interest (lower scores only extend the AP
            curve).
        thresholds: operating points for precision/recall.
        iou_thr: IoU for a detection to match a face.

    Returns:
        ``{"overall": {...}, "buckets": {name: {...}}}``, each with ``faces``, ``ap`` and
        ``at[threshold] = {tp, fp, recall, precision}``.
    """
    overall = _Matched()
    for img in images:
        _match(img, iou_thr, None, overall)
    result: dict[str, Any] = {"overall": _summary(overall, thresholds), "buckets": {}}
    for name, lo, hi in SIZE_BUCKETS:
        acc = _Matched()
        for img in images:
            _match(img, iou_thr, (lo, hi), acc)
        result["buckets"][name] = _summary(acc, thresholds)
    return result
