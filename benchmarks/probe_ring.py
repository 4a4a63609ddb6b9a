"""How close ``--method surrogate``'s ring comes to what was there: ``mirror_surroundings`` with
and without ``MIRROR_SAME`` (the mirror pulled back where it would cross a boundary beyond
the mask's edge: a head's hair, then the wall behind it).

The ring is the part of the product mask the composite does not cover (the mask less the hull
of the face's 68 points and the forehead the composite is stretched to): what the mirrored
surroundings show in the output. The product runs over each clip (``runner.process_file``,
CPU defaults, ``--method surrogate``); on every ``--every``-th frame each painted face's inputs
to ``paint`` are kept, and the ring is filled both ways from the same inputs. Per face: the
mean absolute difference from the original frame in the ring (Lab lightness, and chroma as
the a, b distance): a fill that continues what surrounds the mask the way the original did
comes closer. This reads the original inside the mask, as an evaluation may; the product
never does. Nothing is written but the JSON (``--json``); no face crops.

``--neck``: instead, each painted face painted again from the same inputs without and with the
neck (``surrogate.NECK``; ``--shades``: at these ``NECK_SHADE`` values), the error under the
jaw (``neck_zone``).

    python benchmarks/probe_ring.py [--clips CLIP ...] [--frames 60] [--every 5] [--same 24 40 64]
                                    [--neck [--shades ...]] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, emit_json, prefix_clip, surrogate_paints

from streamanon.anonymize import surrogate
from streamanon.anonymize.surrogate_bank import with_forehead
from streamanon.config import AnonymizeConfig, PipelineConfig

CLIPS = (
    "videos/intel__preview_face-demographics-walking-and-pause.gif",
    "videos/intel_asl_gestures/again.mkv",
    "videos/face_recognition__short_hamilton_clip.mp4",
    "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4",
)


def ring_of(region: Any, points: np.ndarray) -> np.ndarray:
    """The mask's pixels (ROI) the composite does not cover."""
    x0, y0, x1, y1 = region.roi
    cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
    hull = cv2.convexHull(np.round(with_forehead(points, surrogate.FOREHEAD_REACH) - (x0, y0)).astype(np.int32))
    cv2.fillConvexPoly(cover, hull, 1)
    return np.asarray((region.mask > 0) & (cover == 0), np.bool_)


def errors(original: np.ndarray, fill: np.ndarray, region: Any, ring: np.ndarray) -> tuple[float, float]:
    x0, y0, x1, y1 = region.roi
    a = cv2.cvtColor(np.ascontiguousarray(original[y0:y1, x0:x1]), cv2.COLOR_RGB2LAB)[ring].astype(np.float32)
    b = cv2.cvtColor(fill, cv2.COLOR_RGB2LAB)[ring].astype(np.float32)
    return float(np.abs(a[:, 0] - b[:, 0]).mean()), float(np.linalg.norm(a[:, 1:] - b[:, 1:], axis=1).mean())


def neck_zone(region: Any, points: np.ndarray) -> np.ndarray:
    """The ring's pixels (``ring_of``) under the jaw where ``surrogate.neck_under`` may paint:
    its polygon, neither feathered nor faded."""
    x0, y0, x1, y1 = region.roi
    zone = np.zeros((y1 - y0, x1 - x0), np.uint8)
    poly = surrogate.neck_polygon(np.asarray(points, np.float32) - np.array((x0, y0), np.float32), 1e4)
    if poly is not None:
        cv2.fillPoly(zone, [np.round(poly).astype(np.int32)], 1)
    return np.asarray(ring_of(region, points) & (zone > 0), np.bool_)


def recorded(clip: Path, frames: int, every: int, seed: int) -> dict[str, Any]:
    """The product's run over the first ``frames`` frames of ``clip`` (CPU defaults, ``--method
    surrogate``), every ``every``-th frame's faces recorded (``surrogate_paints``)."""
    from streamanon.runner import process_file

    with surrogate_paints(lambda i: i % every == 0) as seen, tempfile.TemporaryDirectory() as tmp:
        src = prefix_clip(clip, frames, Path(tmp))
        cfg = PipelineConfig(anonymize=AnonymizeConfig(method="surrogate", seed=seed))
        process_file(src, Path(tmp) / "out.mp4", cfg)
    return seen


def probe_neck(clip: Path, frames: int, every: int, seed: int, shades: list[float]) -> list[dict[str, Any]]:
    """Per painted face: the painted output's error against the original in ``neck_zone``,
    without the neck (``surrogate.NECK``: the mirrored surroundings there) and with it at each
    of ``shades`` (``NECK_SHADE``)."""
    seen = recorded(clip, frames, every, seed)
    rows, shipped = [], (surrogate.NECK, surrogate.NECK_SHADE)
    for frame, args in seen["calls"]:
        original = seen["io"][frame][0]
        region, points = args[1], args[4]
        zone = neck_zone(region, points)
        if zone.sum() < 16:
            continue
        row: dict[str, Any] = {"roi": [int(v) for v in region.roi], "neck_px": int(zone.sum())}
        for name, value, shade in [("mirror", False, 1.0)] + [(f"neck{v}", True, v) for v in shades]:
            surrogate.NECK, surrogate.NECK_SHADE = value, shade
            kept = [copy.copy(a) for a in args[7:]]  # the focus, changed by the call
            row[name] = errors(original, surrogate.paint(original, *args[1:7], *kept), region, zone)
        surrogate.NECK, surrogate.NECK_SHADE = shipped
        rows.append(row)
    return rows


def probe(clip: Path, frames: int, every: int, seed: int, thresholds: list[int]) -> list[dict[str, Any]]:
    seen = recorded(clip, frames, every, seed)
    rows = []
    same = surrogate.MIRROR_SAME
    for frame, args in seen["calls"]:
        original = seen["io"][frame][0]
        region, points, faces = args[1], args[4], args[6]
        ring = ring_of(region, points)
        if ring.sum() < 16:
            continue
        row: dict[str, Any] = {"roi": [int(v) for v in region.roi], "ring_px": int(ring.sum())}
        for name, value in [("mirror", None)] + [(f"band{v}", v) for v in thresholds]:
            surrogate.MIRROR_SAME = value
            row[name] = errors(original, surrogate.mirror_surroundings(original, faces, region), region, ring)
        surrogate.MIRROR_SAME = same
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Mean errors per variant (``names``, the first the base: the plain mirror), and the faces
    whose error comes closer to (further from) the original's lightness than the base's by
    more than half a unit."""
    summary: dict[str, Any] = {"faces": len(rows)}
    for name in names:
        summary[name] = {
            "lightness_err": round(float(np.mean([r[name][0] for r in rows])), 2) if rows else None,
            "chroma_err": round(float(np.mean([r[name][1] for r in rows])), 2) if rows else None,
        }
        if name != names[0]:
            summary[name]["closer"] = sum(r[name][0] < r[names[0]][0] - 0.5 for r in rows)
            summary[name]["further"] = sum(r[name][0] > r[names[0]][0] + 0.5 for r in rows)
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="*", type=Path, default=[DATA / c for c in CLIPS])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--same", type=int, nargs="*", help="MIRROR_SAME values to compare (default: the shipped one)")
    p.add_argument(
        "--neck", action="store_true", help="instead: the painted output under the jaw, with and without the neck"
    )
    p.add_argument("--shades", type=float, nargs="*", help="with --neck: NECK_SHADE values (default: the shipped one)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result: dict[str, Any] = {"mirror_same": surrogate.MIRROR_SAME, "seed": args.seed, "clips": {}}
    for clip in args.clips:
        if args.neck:
            shades = args.shades or [surrogate.NECK_SHADE]
            rows = probe_neck(clip, args.frames, args.every, args.seed, shades)
            summary = summarise(rows, ["mirror"] + [f"neck{v}" for v in shades])
        else:
            thresholds = args.same or [surrogate.MIRROR_SAME]
            rows = probe(clip, args.frames, args.every, args.seed, thresholds)
            summary = summarise(rows, ["mirror"] + [f"band{v}" for v in thresholds])
        result["clips"][clip.name] = {"summary": summary, "faces": rows}
        print(clip.name, summary, flush=True)
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
