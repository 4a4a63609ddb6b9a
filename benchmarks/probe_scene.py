"""``--method surrogate`` in its scene: how sharp, how contrasted and how colourful each painted
face of one frame is next to its surroundings (and the original face), measured, not looked at.

Runs the product's anonymiser (``runner.process_file``, CPU defaults, ``--seed``) on the first
``--frame`` + 1 frames of ``CLIP`` and, at frame ``--frame``, for every painted face:

* ``sharpness``: gradient energy after a 1 px Gaussian over that after 2 px (2 for sharp step
  edges, more for finer detail, toward 1 when blurred) of the output's inner face (brows to
  mouth, the 68 points the face was painted on), of the original's inner face, and of the
  surroundings (outside every face mask, in the window of half the mask's side around it);
* ``light_5_95``: the 5-95% range of Lab lightness (0-255) of the output's and the original's
  inner face;
* ``chroma_90``: the Lab chroma distance from the median under which 90% of the pixels lie,
  of the output's inner face, the original's, and the surroundings'.

Numbers only: nothing of the frames is written. Runs on any checkout that has the
``surrogate`` method (it patches ``surrogate.paint`` and ``SurrogateAnonymizer.apply`` to see
the frame), so a before/after pair is this script run with two ``PYTHONPATH``s.

    python benchmarks/probe_scene.py [CLIP] [--frame 60] [--seed 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, emit_json, surrogate_paints

from streamanon.config import AnonymizeConfig, PipelineConfig

CLIP = DATA / "videos" / "face_recognition__short_hamilton_clip.mp4"


def sharpness(grey: np.ndarray, where: np.ndarray) -> float:
    def energy(s: float) -> float:
        b = cv2.GaussianBlur(grey, (0, 0), s)
        gx, gy = cv2.Sobel(b, cv2.CV_32F, 1, 0), cv2.Sobel(b, cv2.CV_32F, 0, 1)
        return float((gx * gx + gy * gy)[where].mean())

    return round(energy(1.0) / max(energy(2.0), 1e-9), 3)


def chroma_90(lab: np.ndarray, where: np.ndarray) -> float:
    ab = lab[where][:, 1:].astype(np.float32)
    return round(float(np.percentile(np.linalg.norm(ab - np.median(ab, axis=0), axis=1), 90)), 1)


def light_5_95(lab: np.ndarray, where: np.ndarray) -> float:
    return float(np.ptp(np.percentile(lab[where][:, 0], [5, 95])))


def measure(
    original: np.ndarray, output: np.ndarray, region: Any, points: np.ndarray, faces: np.ndarray
) -> dict[str, Any]:
    """The numbers of one painted face (module doc)."""
    h, w = original.shape[:2]
    x0, y0, x1, y1 = region.roi
    pad = max(2, max(x1 - x0, y1 - y0) // 2 + 1)
    inner = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(inner, cv2.convexHull(np.round(points[17:68]).astype(np.int32)), 1)
    inner_m = inner > 0
    window = np.zeros((h, w), bool)
    window[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = True
    # the blurs read 2 px * 4 around a pixel: the surroundings' pixels are that far from every mask
    far = ~cv2.dilate(faces.astype(np.uint8), np.ones((19, 19), np.uint8)).astype(bool)
    around = window & far
    grey_in = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_out = cv2.cvtColor(output, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lab_in, lab_out = cv2.cvtColor(original, cv2.COLOR_RGB2LAB), cv2.cvtColor(output, cv2.COLOR_RGB2LAB)
    return {
        "roi": [int(v) for v in region.roi],
        "surroundings_px": int(around.sum()),
        "sharpness": {
            "painted": sharpness(grey_out, inner_m),
            "original": sharpness(grey_in, inner_m),
            "surroundings": sharpness(grey_in, around) if around.sum() >= 64 else None,
        },
        "light_5_95": {"painted": light_5_95(lab_out, inner_m), "original": light_5_95(lab_in, inner_m)},
        "chroma_90": {
            "painted": chroma_90(lab_out, inner_m),
            "original": chroma_90(lab_in, inner_m),
            "surroundings": chroma_90(lab_in, window & ~faces) if (window & ~faces).sum() >= 64 else None,
        },
    }


def probe(clip: Path, frame: int, seed: int) -> dict[str, Any]:
    import av

    from streamanon.runner import process_file

    with av.open(str(clip)) as c:
        rate = float(c.streams.video[0].average_rate or 25)
    with surrogate_paints(lambda i: i == frame) as seen, tempfile.TemporaryDirectory() as tmp:
        config = PipelineConfig(anonymize=AnonymizeConfig(method="surrogate", seed=seed))
        process_file(clip, Path(tmp) / "out.mp4", config, duration=(frame + 2) / rate)
    if frame not in seen["io"]:
        raise SystemExit(f"{clip} has no frame {frame}")
    original, output = seen["io"][frame]
    faces = [measure(original, output, a[1], a[4], a[6]) for _, a in seen["calls"]]
    return {"clip": str(clip), "frame": frame, "seed": seed, "painted_faces": faces}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", type=Path, nargs="?", default=CLIP)
    p.add_argument("--frame", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    ns = p.parse_args()
    if not ns.clip.is_file():
        raise SystemExit(f"probe_scene: no clip at {ns.clip} (set STREAMANON_DATA or pass CLIP)")
    res = probe(ns.clip, ns.frame, ns.seed)
    emit_json(res, ns.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
