"""Diagnose ``eval natural`` on ``--method surrogate``: what makes the replacements separable?

Runs ``eval natural``'s measures (``streamanon.eval.natural``: the two-sample classifier on
FaceRes features, dlib's HOG detector) on a fixed seeded draw of identity photos for variants
of the surrogate, all in one process so the originals are scored once:

* ``shipped``: the default bank, one secret for every photo: each photo's run draws the
  *same* composite (what ``eval natural`` measured before it gave each photo its own secret);
* ``shipped-draw``: the default bank, a secret per photo (``eval.product.photo_spec``);
  ``shipped-pull0``: the same with the inner landmarks following the original (``SHAPE_PULL`` 0);
* ``self``, ``self-pull1``, ``self-320`` (diagnostic, NOT shippable: the original face): each
  photo's own face warped onto the bank's shape and painted back through the same warp,
  colour match, mirrored ring and blend (``SHAPE_PULL`` 0, 1; at 320 px instead of 160): what
  the pipeline alone loses;
* ``real-k1``, ``real-k1-pull0`` (diagnostic upper bound, NOT shippable: a real person's face):
  the bank persons' own aligned photos painted through the same pipeline;
* ``k4``, ``k6``, ``k12-flat`` (no contrast push), ``k12-many`` (96 composites): whole-face
  composites built like the bank's but *not* vetted (diagnostic only);
* ``parts``, ``parts2``, ``parts3``: parts composites (``surrogate_bank.parts_composite``'s
  idea) of 1, 2, 3 persons per part, not vetted (``parts``, one person per part, shows a real
  person's eyes: not shippable);
* ``grain``, ``sharpen``: the default bank with the painted face's high-frequency energy raised
  to the surroundings' (measured where the blend's alpha is 0: the mirrored ring and the frame
  outside the mask) by Gaussian grain, or an unsharp mask.

Nothing is written but the JSON (``--json``); no face crops.

    python benchmarks/probe_natural.py --faces DIR [DIR ...] [--limit 40] [--seed 0]
                                       [--variants shipped,shipped-draw,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamanon.anonymize import factory as factory_mod
from streamanon.anonymize import surrogate as surrogate_mod
from streamanon.anonymize import surrogate_bank as sb
from streamanon.config import AnonymizeConfig, PipelineConfig

VARIANTS = (
    "shipped",
    "shipped-draw",
    "self",
    "self-pull1",
    "shipped-pull0",
    "real-k1",
    "real-k1-pull0",
    "k4",
    "k6",
    "k12-flat",
    "k12-many",
    "parts",
    "parts2",
    "parts3",
    "grain",
    "sharpen",
    "self-320",
)
DATA = Path(os.environ.get("STREAMANON_DATA", "../shared/data"))


#: The parts of a parts composite, as point ranges of the 78-point shape: each from another person.
PARTS = {"eyes": list(range(17, 27)) + list(range(36, 48)), "nose": list(range(27, 36)), "mouth": list(range(48, 68))}


def parts_face(faces: list[np.ndarray], shape: np.ndarray) -> np.ndarray:
    """``faces[0]``'s skin and outline with the eyes and brows, nose and mouth of
    ``faces[1:]`` (aligned faces), each part's Lab mean shifted to the base's there and blended
    through a feathered hull."""
    size = faces[0].shape[0]
    out = cv2.cvtColor(faces[0], cv2.COLOR_RGB2LAB).astype(np.float32)
    for face, idx in zip(faces[1:], PARTS.values(), strict=False):
        m = np.zeros((size, size), np.uint8)
        pts = shape[idx]
        if idx[0] == 17:  # two eye regions
            for side in (list(range(0, 5)) + list(range(10, 16)), list(range(5, 10)) + list(range(16, 22))):
                cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts[side]).astype(np.int32)), 1)
        else:
            cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
        a = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 3.0)[..., None]
        lab = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
        sel = m > 0
        lab += out[sel].mean(0) - lab[sel].mean(0)
        out = out * (1 - a) + lab * a
    res: np.ndarray = cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return res


def unvetted_bank(bp: sb.BankPhotos, k: int, contrast: float, count: int, seed: int) -> sb.SurrogateBank:
    """Composites of ``k`` persons as ``build_bank`` makes them, without the privacy check."""
    photos = bp.photos
    size = photos[0].aligned.shape[0]
    mean_face = np.mean([p.aligned.astype(np.float32) for p in photos], axis=0)
    _, cover = sb.piecewise_affine(np.zeros((size, size, 3), np.uint8), bp.shape, bp.shape, bp.triangles, (size, size))
    rng = np.random.default_rng(seed)
    faces = []
    for n in range(count):
        if k < 0:  # parts (4) of -k persons each
            members = rng.choice(len(photos), size=-4 * k, replace=False).reshape(4, -k)
            parts = []
            for grp in members:
                c = np.mean([photos[m].aligned.astype(np.float32) for m in grp], axis=0)
                parts.append(np.clip(mean_face + contrast * (c - mean_face) + 0.5, 0, 255).astype(np.uint8))
            comp = parts_face(parts, bp.shape).astype(np.float32)
        elif k == 1:
            comp = photos[n % len(photos)].aligned.astype(np.float32)
        else:
            members = rng.choice(len(photos), size=k, replace=False)
            comp = np.mean([photos[m].aligned.astype(np.float32) for m in members], axis=0)
            comp = mean_face + contrast * (comp - mean_face)
        u8 = np.clip(comp + 0.5, 0, 255).astype(np.uint8)
        faces.append(np.where(cover[..., None], u8, sb.extend_outside(u8, cover.astype(np.uint8))))
    n = len(faces)
    return sb.SurrogateBank(
        np.stack(faces),
        bp.shape,
        bp.triangles,
        np.array(["female"] * n),
        np.array(["young"] * n),
        np.zeros(n, np.float32),
        np.zeros(n, np.float32),
        k,
        f"unvetted k={k}",
    )


def own_bank(shipped: sb.SurrogateBank, image: np.ndarray, scale: int = 1) -> sb.SurrogateBank:
    """A one-face bank of the photo's own face warped onto the bank's shape (diagnostic)."""
    from streamanon.models.landmarks import Landmarker68
    from streamanon.models.recognizer import DlibRecogniser

    rec, lm = DlibRecogniser("hog", 1, max_side=600), Landmarker68()
    got = sb._one_face(rec, lm, image, shipped.faces.shape[1] * scale)
    assert got is not None
    img, _, p68 = got
    size = shipped.faces.shape[1] * scale
    shape = shipped.shape * scale
    face, cover = sb.piecewise_affine(img, sb.with_forehead(p68), shape, shipped.triangles, (size, size))
    face = np.where(cover[..., None], face, sb.extend_outside(face, cover.astype(np.uint8)))
    z = np.zeros(1, np.float32)
    return dataclasses.replace(
        shipped,
        faces=face[None],
        gender=shipped.gender[:1],
        age_band=shipped.age_band[:1],
        min_dlib=z,
        min_faceres=z,
        shape=shape,
    )


def hf_std(img: np.ndarray, where: np.ndarray) -> float:
    """Std of the luma's high-frequency residual (image minus its sigma-1 blur) at ``where``."""
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    r = y - cv2.GaussianBlur(y, (0, 0), 1.0)
    v = r[where]
    return float(v.std()) if v.size > 16 else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=Path, nargs="+", required=True)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--json", type=Path)
    ns = p.parse_args()
    variants = [v for v in ns.variants.split(",") if v]
    if bad := [v for v in variants if v not in VARIANTS]:
        p.error(f"unknown variants {bad}; choose from {VARIANTS}")

    from streamanon.eval import product as product_mod
    from streamanon.eval.data import load_identities
    from streamanon.eval.identity import build_references
    from streamanon.eval.natural import originals, score_method, summarise
    from streamanon.eval.product import MethodSpec, ProductRunner
    from streamanon.models.faceres import FaceResRecogniser
    from streamanon.models.recognizer import DlibRecogniser

    images = load_identities(ns.faces)
    if ns.limit and ns.limit < len(images):
        pick = np.random.default_rng(ns.seed).choice(len(images), size=ns.limit, replace=False)
        images = [images[i] for i in sorted(pick.tolist())]
    hog = DlibRecogniser("hog", 1)
    refs, _ = build_references(images, hog)
    hog0 = DlibRecogniser("hog", 0)
    features = FaceResRecogniser(locator=hog)
    real, found, males = originals(refs, features, hog0, None)
    config = PipelineConfig(anonymize=AnonymizeConfig(method="surrogate", seed=ns.seed))
    runner = ProductRunner(config)

    built = ("real-k1", "k4", "k6", "k12-flat", "k12-many", "parts", "parts2", "parts3")
    need_photos = any(v.removesuffix("-pull0") in built for v in variants)
    bp = sb.load_photos([ns.data / s for s in sb.DEFAULT_SOURCES]) if need_photos else None
    shipped = sb.default_bank()
    banks: dict[str, Any] = {}
    if bp is not None:
        banks = {
            "real-k1": lambda: unvetted_bank(bp, 1, 1.0, len(bp.photos), ns.seed),
            "k4": lambda: unvetted_bank(bp, 4, sb.CONTRAST, 32, ns.seed),
            "k6": lambda: unvetted_bank(bp, 6, sb.CONTRAST, 32, ns.seed),
            "k12-flat": lambda: unvetted_bank(bp, 12, 1.0, 32, ns.seed),
            "parts": lambda: unvetted_bank(bp, -1, 1.0, 32, ns.seed),
            "parts2": lambda: unvetted_bank(bp, -2, sb.CONTRAST, 32, ns.seed),
            "parts3": lambda: unvetted_bank(bp, -3, sb.CONTRAST, 32, ns.seed),
            "k12-many": lambda: unvetted_bank(bp, 12, sb.CONTRAST, 96, ns.seed),
        }

    own: list[Any] = []
    if any(v.startswith("self") for v in variants):
        own = [own_bank(shipped, r.image, 2 if "self-320" in variants else 1) for r in refs]
    own_list = own
    own = []
    drawn: list[int] = []
    counter = {"n": 0, "per_photo": False}
    orig_init = surrogate_mod.SurrogateAnonymizer.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        orig_init(self, *a, **kw)
        if counter["per_photo"]:  # a fresh secret per photo (each photo is its own run)
            counter["n"] += 1
            self._rng = np.random.default_rng([ns.seed, counter["n"]])
            if own:  # the photo's own face as its bank (diagnostic: the pipeline's loss alone)
                self.bank = own[counter["n"] - 1]
        orig_draw = self._draw

        def draw(*da: Any) -> int:
            i = orig_draw(*da)
            drawn.append(i)
            return int(i)

        self._draw = draw

    surrogate_mod.SurrogateAnonymizer.__init__ = init  # type: ignore[method-assign]
    orig_blend = surrogate_mod.pyramid_blend
    texture = {"mode": ""}

    def blend(front: np.ndarray, back: np.ndarray, alpha: np.ndarray, levels: int) -> np.ndarray:
        if texture["mode"] == "grain":
            # the surroundings' high-frequency energy (where the face is not painted: the
            # mirrored ring and the frame outside the mask), the face's raised to it by grain
            tb, tf = hf_std(back, alpha == 0), hf_std(front, alpha > 0.5)
            add = float(np.sqrt(max(tb * tb - tf * tf, 0.0)))
            if add > 0:
                noise = np.random.default_rng(0).normal(0, add, front.shape[:2]).astype(np.float32)
                front = np.clip(front.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)
        elif texture["mode"] == "sharpen":
            f = front.astype(np.float32)
            front = np.clip(f + 0.8 * (f - cv2.GaussianBlur(f, (0, 0), 1.5)), 0, 255).astype(np.uint8)
        return orig_blend(front, back, alpha, levels)

    surrogate_mod.pyramid_blend = blend  # type: ignore[assignment]

    photo_spec = product_mod.photo_spec
    rows: dict[str, Any] = {}
    for v in variants:
        t0 = time.time()
        bank = banks[v.removesuffix("-pull0")]() if v.removesuffix("-pull0") in banks else shipped
        factory_mod.surrogate_bank = lambda fb, k, bank=bank: bank  # type: ignore[assignment]
        counter["per_photo"] = v != "shipped"
        texture["mode"] = v if v in ("grain", "sharpen") else ""
        drawn.clear()
        counter["n"] = 0
        own[:] = own_list if v.startswith("self") else []
        surrogate_mod.SHAPE_PULL = 0.0 if v in ("self", "self-320", "shipped-pull0", "real-k1-pull0") else 1.0
        spec = MethodSpec(v, dataclasses.replace(config.anonymize))
        # "shipped": one secret for every photo (eval natural before per-photo secrets)
        product_mod.photo_spec = (lambda sp, i: sp) if v == "shipped" else photo_spec  # type: ignore[assignment]
        res = score_method(refs, runner, spec, features, hog0, None)
        s = summarise(refs, real, found, res, ns.seed, males)
        rows[v] = {
            "classifier_accuracy": s["classifier_accuracy"],
            "hog_found": s["hog_found"],
            "hog_found_original": s["hog_found_original"],
            "hog_score": s["hog_score"],
            "distinct_composites": len(set(drawn)),
            "bank": len(bank),
        }
        print(v, json.dumps(rows[v]), f"{time.time() - t0:.0f}s", flush=True)
    out = {"faces": len(refs), "identities": len({r.identity for r in refs}), "variants": rows}
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
