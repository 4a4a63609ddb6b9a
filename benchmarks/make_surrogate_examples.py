"""Example images of ``--method surrogate`` (``docs/examples/surrogate-*.jpg``), licence-clean sources only.

* ``surrogate-portrait.jpg``: original | blur | surrogate of the package's demo image (NASA,
  public domain, ``streamanon/assets/README.md``) upscaled 2x so the face is portrait size
  (>= 200 px), through ``process_file``.
* ``surrogate-grey.jpg``: original | surrogate of the same portrait in greyscale (greyscale in,
  greyscale out).
* ``surrogate-cctv.jpg``: original | surrogate | surrogate ``--keep gender`` of the last frame of Intel's walking clip
  (CC BY 4.0, intel-iot-devkit/sample-videos; faces 20-35 px) after the product ran over the
  clip's first frames (tracking, one composite per track, smoothing).
* ``surrogate-signer.jpg``: the same three for Intel's ASL signer (face 70-90 px).
* ``surrogate-bank.jpg``: the first 16 composites of the shipped bank (composites of >= 5
  persons each: no raw face).

    python benchmarks/make_surrogate_examples.py [--out docs/examples] [--seed 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, REPO, prefix_clip
from make_examples import ASTRONAUT, last_frame, read_rgb, save_jpeg

from streamanon.config import AnonymizeConfig, PipelineConfig

CLIPS = {
    "surrogate-cctv": ("videos/intel__preview_face-demographics-walking-and-pause.gif", 36),
    "surrogate-signer": ("videos/intel_asl_gestures/again.mkv", 40),
}


def row(images: list[np.ndarray], height: int) -> np.ndarray:
    tiles = [
        cv2.resize(i, (round(i.shape[1] * height / i.shape[0]), height), interpolation=cv2.INTER_AREA) for i in images
    ]
    return np.hstack(tiles)


def main(argv: list[str] | None = None) -> int:
    from streamanon.anonymize.surrogate_bank import default_bank
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "examples")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--max-kb", type=int, default=160)
    ns = p.parse_args(argv)
    ns.out.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig(anonymize=AnonymizeConfig(method="surrogate", seed=ns.seed))
    blur = PipelineConfig(anonymize=AnonymizeConfig(method="blur"))
    stages = Stages(cfg)
    keep_cfg = PipelineConfig(anonymize=AnonymizeConfig(method="surrogate", seed=ns.seed, keep=("gender",)))
    keep_stages = Stages(keep_cfg)
    with tempfile.TemporaryDirectory(prefix="surrogate-examples-") as tmp:
        work = Path(tmp)
        big = work / "astronaut2x.png"
        orig = read_rgb(ASTRONAUT)
        orig = cv2.resize(orig, (1024, 1024), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(big), cv2.cvtColor(orig, cv2.COLOR_RGB2BGR))
        rep = process_file(big, work / "s.png", cfg, stages=stages)
        process_file(big, work / "b.png", blur)
        crop = (slice(60, 700), slice(160, 800))
        img = row([orig[crop], read_rgb(work / "b.png")[crop], read_rgb(work / "s.png")[crop]], 400)
        n = save_jpeg(ns.out / "surrogate-portrait.jpg", img, ns.max_kb)
        print(f"surrogate-portrait.jpg {n / 1024:.1f} KB, served {rep.anonymizer.get('faces')}")
        grey = np.repeat(cv2.cvtColor(orig, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        cv2.imwrite(str(work / "grey.png"), grey)
        rep = process_file(work / "grey.png", work / "g.png", cfg, stages=stages)
        out = read_rgb(work / "g.png")
        spread = int((out.max(-1).astype(int) - out.min(-1)).max())
        n = save_jpeg(ns.out / "surrogate-grey.jpg", row([grey[crop], out[crop]], 400), ns.max_kb)
        served = rep.anonymizer.get("faces")
        print(f"surrogate-grey.jpg {n / 1024:.1f} KB, largest channel spread {spread}, served {served}")
        for name, (rel, frames) in CLIPS.items():
            clip = ns.data / rel
            if not clip.is_file():
                print(f"skip {name}: {clip} not found")
                continue
            src = prefix_clip(clip, frames, work)
            dst = work / f"{name}.mp4"
            rep = process_file(src, dst, cfg, stages=stages)
            kept = work / f"{name}-keep.mp4"
            process_file(src, kept, keep_cfg, stages=keep_stages)
            o, s, k = last_frame(src), last_frame(dst), last_frame(kept)
            n = save_jpeg(ns.out / f"{name}.jpg", row([o, s, k], o.shape[0] * 2), ns.max_kb)
            print(f"{name}.jpg {n / 1024:.1f} KB ({rep.frames} frames, served {rep.anonymizer.get('faces')})")
    bank = default_bank()
    tiles = bank.faces[:16]
    grid = np.vstack([np.hstack(list(tiles[i : i + 8])) for i in range(0, len(tiles), 8)])
    n = save_jpeg(ns.out / "surrogate-bank.jpg", grid, ns.max_kb)
    print(f"surrogate-bank.jpg {n / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
