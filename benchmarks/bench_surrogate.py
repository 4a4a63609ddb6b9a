"""``--method surrogate``: per-face cost of the anonymiser, and end-to-end fps on a clip, next to ``solid``.

Per-face cost: one 1280x720 frame with ``--faces`` synthetic face boxes of ``--size`` px
(landmarks from dlib's 68-point predictor on a shared portrait pasted there), the
anonymiser's ``apply`` timed over ``--repeat`` calls after a warm-up; what it includes:
dlib's 68-point fit, the blur of the mask, the warp, colour match and blend.

End to end: the first ``--frames`` frames of a shared 720p clip with faces through the
product (``runner.process_file``, CPU defaults) with ``solid`` and ``surrogate``, in
alternating runs, so machine load hits both alike. Outputs go to a temporary folder.

    python benchmarks/bench_surrogate.py [--faces 4] [--size 96] [--sizes PX ...] [--gap PX]
                                         [--clip PATH] [--frames 60] [--no-clip] [--json FILE]
    python benchmarks/bench_surrogate.py --four-faces [--frames 100] [--rounds 2]

``--four-faces``: instead, the product's CLI end to end (``python3 -m streamanon CLIP -o OUT
--method M --report R.json``, solid and surrogate alternating) on a synthetic 1280x720 clip of
``--frames`` frames written to a temporary folder: four persons' heads (faces of 60, 80, 100
and 120 px, shared portraits) drifting over a frame of a clip without faces; per run the
report's fps, the anonymise stage's seconds and the child's CPU seconds, and the load average.

``--gap``: px between the pasted tiles (each twice the face's side); at the default 20 the
faces' masks touch (a crowd), at 80 (96 px faces) or 140 (240 px) each face is alone in its
surroundings (a street). ``cpu_ms_per_face`` is process time (steadier than wall time on a
loaded machine; it counts OpenCV's threads too).

``--keep-agreement DIR [DIR ...]``: instead, ``eval natural``'s measures (``eval.natural``) on
``--limit`` photos of those identity folders (seeded draw, as ``eval natural --limit --seed``)
for ``surrogate`` and ``surrogate --keep gender``, with the share of replaced faces whose
FaceRes gender is the original's (``gender_agreement``), and how many of the shipped bank's
composites ``--keep gender`` draws for a man and for a woman (``keep_gender_composites``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, emit_json, prefix_clip

from streamanon.config import AnonymizeConfig, PipelineConfig

PORTRAIT = DATA / "identities" / "dlib_johns"


def per_face(faces: int, size: int, repeat: int, gap: int = 20) -> dict[str, Any]:
    from streamanon.anonymize.surrogate import SurrogateAnonymizer
    from streamanon.anonymize.surrogate_bank import default_bank
    from streamanon.io import read_image
    from streamanon.models.landmarks import Landmarker68
    from streamanon.models.recognizer import DlibRecogniser
    from streamanon.types import Detections

    photo = next(p for p in sorted(PORTRAIT.rglob("*")) if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
    img = read_image(photo).image
    rec = DlibRecogniser()
    f = rec.detect(img)[0]
    x0, y0, x1, y1 = (int(v) for v in f.box)
    pad = (x1 - x0) // 2
    crop = img[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
    scale = size / (x1 - x0)
    tile = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 110, np.uint8)
    faces = max(1, min(faces, (1280 - 40 + gap) // (tile.shape[1] + gap)))  # as many as fit in a row
    boxes, five = [], []
    for i in range(faces):
        ox, oy = 40 + i * (tile.shape[1] + gap), 100
        frame[oy : oy + tile.shape[0], ox : ox + tile.shape[1]] = tile
        bx0, by0 = ox + (x0 - max(0, x0 - pad)) * scale, oy + (y0 - max(0, y0 - pad)) * scale
        boxes.append([bx0, by0, bx0 + size, by0 + size])
    lm = Landmarker68()
    from streamanon.anonymize.align import five_from_68

    pts = lm(frame, np.array(boxes, np.float32))
    five = [five_from_68(p) for p in pts]
    dets = Detections(np.array(boxes, np.float32), landmarks=np.stack(five), track_id=np.arange(faces))
    anon = SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=0), default_bank(), lm)
    for _ in range(3):
        anon.apply(frame, dets)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        anon.apply(frame, dets)
    ms = (time.perf_counter() - t0) * 1000 / repeat
    cpu = (time.process_time() - c0) * 1000 / repeat
    return {
        "faces": faces,
        "face_px": size,
        "ms_frame": round(ms, 2),
        "ms_per_face": round(ms / faces, 2),
        "cpu_ms_per_face": round(cpu / faces, 2),
        "served": dict(anon.served),
    }


def end_to_end(clip: Path, frames: int, rounds: int) -> dict[str, Any]:
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    out: dict[str, list[float]] = {"solid": [], "surrogate": []}
    faces: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = prefix_clip(clip, frames, Path(tmp))
        stages = {m: Stages(PipelineConfig(anonymize=AnonymizeConfig(method=m, seed=0))) for m in out}
        for r in range(rounds):
            for m in out if r % 2 == 0 else reversed(list(out)):
                t0 = time.perf_counter()
                rep = process_file(src, Path(tmp) / f"o.{m}.mp4", stages[m].config, stages=stages[m])
                out[m].append(frames / (time.perf_counter() - t0))
                faces[m] = {"faces": rep.faces, "served": rep.anonymizer.get("faces")}
    fps = {m: round(float(np.median(v)), 1) for m, v in out.items()}
    return {"clip": str(clip), "frames": frames, "fps": fps, "faces": faces}


FOUR = ("biden.jpg", "obama.jpg", "alex-lacamoire.png", "lin-manuel-miranda.png")
BACKGROUND = DATA / "videos" / "negatives_no_faces" / "intel__bottle-detection.mp4"  # no face in it


def synth_clip(dst: Path, frames: int, sizes: tuple[int, ...] = (60, 80, 100, 120)) -> Path:
    """A 1280x720 clip of ``frames`` frames: four persons' heads (shared portraits, faces of
    ``sizes`` px, each the face's box and a soft ring of its photo around it) drifting slowly
    over the first frame of a clip without faces (so the clip holds exactly four). Written
    under ``dst`` (a temporary folder: no media in the repo)."""
    from streamanon.io import read_image
    from streamanon.models.recognizer import DlibRecogniser

    rec = DlibRecogniser()
    ok, first = cv2.VideoCapture(str(BACKGROUND)).read()
    if not ok:
        raise SystemExit(f"cannot read {BACKGROUND}")
    bg = cv2.resize(cv2.cvtColor(first, cv2.COLOR_BGR2RGB), (1280, 720), interpolation=cv2.INTER_CUBIC)
    heads = []
    for name, size in zip(FOUR, sizes, strict=False):
        img = read_image(DATA / "identities" / "face_recognition_examples" / name).image
        x0, y0, x1, y1 = (int(v) for v in rec.detect(img)[0].box)
        s = size / (x1 - x0)
        pad = (x1 - x0) * 3 // 4
        crop = img[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
        tile = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        h, w = tile.shape[:2]
        soft = np.zeros((h, w), np.float32)
        cv2.ellipse(soft, (w // 2, h // 2), (int(w * 0.42), int(h * 0.46)), 0, 0, 360, 1.0, -1)
        heads.append((tile, cv2.GaussianBlur(soft, (0, 0), max(2.0, w / 20))[:, :, None]))
    path = dst / "four_faces_720p.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1280, 720))
    for i in range(frames):
        frame = bg.copy()
        for k, (tile, soft) in enumerate(heads):
            h, w = tile.shape[:2]
            ox = int(100 + k * 280 + 30 * np.sin(i / 15 + k))
            oy = int(260 + 20 * np.cos(i / 20 + k) - h // 3)
            roi = frame[oy : oy + h, ox : ox + w].astype(np.float32)
            frame[oy : oy + h, ox : ox + w] = np.clip(roi + soft * (tile - roi) + 0.5, 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def cli_runs(clip: Path, rounds: int, tmp: Path, methods: tuple[str, ...] = ("solid", "surrogate")) -> dict[str, Any]:
    """``python3 -m streamanon CLIP -o OUT --method M --report R.json`` per method, alternating
    (the order reversed every other round): the report's fps and the child's CPU seconds."""
    import os
    import resource
    import subprocess

    res: dict[str, Any] = {m: {"fps": [], "cpu_s": [], "wall_s": []} for m in methods}
    for r in range(rounds):
        for m in methods if r % 2 == 0 else tuple(reversed(methods)):
            rep = tmp / f"r.{m}.json"
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "streamanon", str(clip), "-o", str(tmp / f"o.{m}.mp4")]
            subprocess.run([*cmd, "--method", m, "--report", str(rep), "-q", "--seed", "0"], check=True)
            wall = time.perf_counter() - t0
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            report = json.loads(rep.read_text())["summary"]
            res[m]["fps"].append(report["fps"])
            res[m].setdefault("anonymize_stage_s", []).append(report["stage_seconds"]["anonymize"])
            res[m]["cpu_s"].append(round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2))
            res[m]["wall_s"].append(round(wall, 2))
            res[m]["faces"] = report.get("anonymizer", {}).get("faces")
            res[m]["fallback"] = report.get("anonymizer", {}).get("fallback_reasons")
    res["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return res


def keep_agreement(folders: list[Path], limit: int, seed: int) -> dict[str, Any]:
    import dataclasses

    from streamanon.anonymize.surrogate_bank import default_bank
    from streamanon.eval.data import load_identities
    from streamanon.eval.identity import build_references
    from streamanon.eval.natural import evaluate_natural
    from streamanon.eval.product import MethodSpec, ProductRunner
    from streamanon.models.faceres import FaceResRecogniser
    from streamanon.models.recognizer import DlibRecogniser

    images = load_identities(folders)
    if limit and limit < len(images):
        pick = np.random.default_rng(seed).choice(len(images), size=limit, replace=False)
        images = [images[i] for i in sorted(pick.tolist())]
    hog = DlibRecogniser("hog", 1)
    refs, _ = build_references(images, hog)
    config = PipelineConfig(anonymize=AnonymizeConfig(method="surrogate", seed=seed))
    base = config.anonymize
    specs = [
        MethodSpec("surrogate", base),
        MethodSpec("surrogate --keep gender", dataclasses.replace(base, keep=("gender",))),
    ]
    result, _ = evaluate_natural(
        refs, ProductRunner(config), specs, FaceResRecogniser(locator=hog), DlibRecogniser("hog", 0), None, seed=seed
    )
    keys = ("classifier_accuracy", "hog_found", "gender_agreement")
    bank = default_bank()
    return {
        "faces": len(refs),
        "methods": {k: {c: m.get(c) for c in keys} for k, m in result["methods"].items()},
        # the composites --keep gender draws for each gender (the painted labels where the bank has them)
        "keep_gender_composites": {g: int(bank.keeps_gender(g).sum()) for g in ("male", "female")},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--faces", type=int, default=4)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--gap", type=int, default=20, help="px between the face tiles (their masks touch at 20)")
    p.add_argument("--sizes", type=int, nargs="+", help="face sizes of the per-face rows (default: 32, --size, 240)")
    p.add_argument("--clip", type=Path, default=DATA / "videos" / "openpose__video.avi")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-clip", action="store_true")
    p.add_argument("--clip-only", action="store_true", help="the end-to-end run only (no per-face rows)")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--four-faces", action="store_true", help="instead: the CLI on a synthetic 720p clip of 4 faces (60-120 px)"
    )
    p.add_argument("--keep-agreement", type=Path, nargs="+", metavar="DIR")
    p.add_argument("--limit", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args()
    if ns.four_faces:
        with tempfile.TemporaryDirectory() as tmp:
            clip = synth_clip(Path(tmp), ns.frames)
            res: dict[str, Any] = {"four_faces_720p": {"frames": ns.frames} | cli_runs(clip, ns.rounds, Path(tmp))}
        ns.no_clip = True
    elif ns.keep_agreement:
        res = keep_agreement(ns.keep_agreement, ns.limit, ns.seed)
    elif ns.clip_only:
        res = {}
    else:
        sizes = ns.sizes or (32, ns.size, 240)
        res = {"per_face": [per_face(ns.faces, s, ns.repeat, ns.gap) for s in sizes]}
    if not ns.keep_agreement and not ns.no_clip:
        res["end_to_end"] = end_to_end(ns.clip, ns.frames, ns.rounds)
    emit_json(res, ns.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
