"""README example images of ``--method generate`` (``docs/examples/``), from licence-clean sources only.

* ``astronaut.jpg``: original | generate of the package's demo image (NASA, public domain,
  ``streamanon/assets/README.md``), through ``streamanon``'s own file path (``process_file``).
* ``intel-*.jpg``: original | generate of one frame of Intel's sample videos (CC BY 4.0,
  intel-iot-devkit/sample-videos; attribution in the README): the first ``--frames`` frames
  of the clip go through the product (tracking, per-track latent, landmark smoothing), and
  the last one is shown.
* ``synthetic-grid.jpg``: generated faces alone: the chips the product cuts around the
  astronaut's face and the signer's, one latent per column, everything outside the
  generator's mask painted grey (no real pixel is shown).

Every JPEG is written at the highest quality that keeps it under ``--max-kb``. Nothing is
written from any other source of ``$STREAMANON_DATA`` (licences).

    python benchmarks/make_examples.py [--generator engines/generator-64.onnx] [--out docs/examples]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, REPO, prefix_clip

from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.io import VideoSource

ASTRONAUT = REPO / "streamanon" / "assets" / "astronaut.jpg"
#: Intel sample videos (CC BY 4.0) and the frame shown (the last of the prefix run).
INTEL_CLIPS = {
    "intel-asl-again": ("videos/intel_asl_gestures/again.mkv", 40),
    "intel-head-pose": ("videos/intel__preview_head-pose-face-detection-female-and-male.gif", 30),
    "intel-walking": ("videos/intel__preview_face-demographics-walking-and-pause.gif", 36),
}


def save_jpeg(path: Path, rgb: NDArray[np.uint8], max_kb: int) -> int:
    """Write ``rgb`` as the best-quality JPEG under ``max_kb``; returns its size in bytes."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for q in range(90, 29, -5):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok and len(buf) <= max_kb * 1024:
            break
    path.write_bytes(buf.tobytes())
    return len(buf)


def side_by_side(a: NDArray[np.uint8], b: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    gap = np.full((a.shape[0], 6, 3), 255, np.uint8)
    pair = np.concatenate([a, gap, b], axis=1)
    scale = min(1.0, width / pair.shape[1])
    if scale < 1:
        pair = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(pair)


def read_rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).astype(np.uint8)


def last_frame(path: Path) -> NDArray[np.uint8]:
    frame = None
    with VideoSource(path, audio=False) as src:
        for f in src:
            frame = f.image
    if frame is None:
        raise SystemExit(f"{path}: no frames")
    return frame


def config(generator: Path | None, seed: int) -> PipelineConfig:
    return PipelineConfig(
        anonymize=AnonymizeConfig(method="generate", generator=str(generator) if generator else None, seed=seed)
    )


def chips_of(image: NDArray[np.uint8], cfg: PipelineConfig, stages: Any) -> tuple[Any, ...]:
    """The generator inputs the product makes for the faces of ``image`` (via a spy)."""
    from streamanon.anonymize.generate import GenerateAnonymizer, GenerateModels

    models = GenerateModels(cfg.anonymize)
    seen: list[tuple[Any, ...]] = []
    real = models.generator

    class Spy:
        size, z_dim = real.size, real.z_dim

        def latents(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
            return real.latents(n, rng)

        def __call__(self, chips: Any, masks: Any, lms: Any, z: Any) -> Any:
            seen.append((chips.copy(), masks.copy(), lms.copy()))
            return real(chips, masks, lms, z)

    models.generator = Spy()  # type: ignore[assignment]
    GenerateAnonymizer(cfg.anonymize, models).apply(image, stages.detector([image])[0])
    if not seen:
        raise SystemExit("the generator served no face in the grid's source image")
    return real, *seen[0]


def main(argv: list[str] | None = None) -> int:
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", type=Path, default=None, help="exported generator (default: the shipped one)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "examples")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--seed", type=int, default=3, help="run secret (default 3: reproducible images)")
    p.add_argument("--width", type=int, default=720, help="width of a side-by-side image (default 720)")
    p.add_argument("--max-kb", type=int, default=60)
    p.add_argument("--grid-only", action="store_true", help="write only the grid of synthetic faces")
    p.add_argument("--grid-name", default="synthetic-grid.jpg", help="file name of the grid")
    ns = p.parse_args(argv)
    ns.out.mkdir(parents=True, exist_ok=True)
    cfg = config(ns.generator, ns.seed)
    stages = Stages(cfg)
    sources: dict[str, NDArray[np.uint8]] = {}
    with tempfile.TemporaryDirectory(prefix="examples-") as tmp:
        work = Path(tmp)
        out = work / "astronaut.png"
        sources["astronaut"] = orig = read_rgb(ASTRONAUT)
        if not ns.grid_only:
            process_file(ASTRONAUT, out, cfg, stages=stages)
            n = save_jpeg(ns.out / "astronaut.jpg", side_by_side(orig, read_rgb(out), ns.width), ns.max_kb)
            print(f"astronaut.jpg {n / 1024:.1f} KB")
        for name, (rel, frames) in INTEL_CLIPS.items():
            clip = ns.data / rel
            if not clip.is_file():
                print(f"skip {name}: {clip} not found")
                continue
            src = prefix_clip(clip, frames, work)
            if ns.grid_only:
                sources[name] = last_frame(src)
                continue
            dst = work / f"{name}.mp4"
            rep = process_file(src, dst, cfg, stages=stages)
            o, g = last_frame(src), last_frame(dst)
            sources[name] = o
            n = save_jpeg(ns.out / f"{name}.jpg", side_by_side(o, g, ns.width), ns.max_kb)
            print(f"{name}.jpg {n / 1024:.1f} KB ({rep.frames} frames, served {rep.anonymizer.get('faces')})")
    # the grid: synthetic faces alone, 8 latents per source face
    rows: list[NDArray[np.uint8]] = []
    rng = np.random.default_rng(ns.seed)
    for name in ("astronaut", "intel-asl-again"):
        if name not in sources:
            continue
        runner, chips, masks, lms = chips_of(sources[name], cfg, stages)
        for _ in range(2):
            k = 8
            g = runner(
                np.repeat(chips[:1], k, 0), np.repeat(masks[:1], k, 0), np.repeat(lms[:1], k, 0), runner.latents(k, rng)
            )
            m = masks[0][..., None] > 0
            alone = np.where(m, g, np.uint8(230)).astype(np.uint8)
            rows.append(np.concatenate(list(alone), axis=1))
    grid = np.concatenate(rows, axis=0)
    grid = np.asarray(cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR), np.uint8)
    n = save_jpeg(ns.out / ns.grid_name, grid, ns.max_kb)
    print(f"{ns.grid_name} {n / 1024:.1f} KB ({grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
