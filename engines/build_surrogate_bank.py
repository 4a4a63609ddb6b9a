#!/usr/bin/env python3
"""Build engines/surrogate-bank.npz, the default bank of ``--method surrogate`` (run once),
and label its composites by what FaceRes reads of them painted into photos (``relabel``).

Composites of k persons each from the shared data's CelebA-HQ folders (terms in
``engines/SURROGATE_BANK_CARD.md``), every one checked to be within neither dlib's 0.6 nor
FaceRes's 1%-false-match threshold of any bank person (``streamanon.anonymize.surrogate_bank``).
Needs dlib and face_recognition_models (the ``eval`` extra) and ``engines/faceres.onnx``.
Then put the printed sha256 into ``engines/registry.json`` (``surrogate-bank``).

    python engines/build_surrogate_bank.py [--data ../shared/data] [-o engines/surrogate-bank.npz] [--seed 0]
    python engines/build_surrogate_bank.py relabel [BANK] [--data ../shared/data] [-o BANK] [--per-gender 20]

``relabel``: every composite is painted through the product (``eval.product.ProductRunner``:
detector, tracker, ``--method surrogate`` with a bank of that composite alone) into photos of
persons outside the evaluation sets (``RELABEL_SOURCES``: LFW and UTKFace folders of
``identities_extra``; per folder ``--per-gender`` adults FaceRes reads as men and as many as
women, first photo of each person, seeded draw), and FaceRes reads the gender of each painting
at the original's dlib box, as ``eval natural`` measures ``--keep gender``. The composites'
``painted_gender`` and ``painted_consistency`` (``surrogate_bank.painted_labels``) are written
into the bank; its composites are left byte for byte. ``--json`` writes each painting's reading;
it ends with ``split_half`` (how the consistency threshold was chosen), which
``split-half RELABEL.json`` prints again from that file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamanon.anonymize.surrogate_bank import (
    AGE_BANDS,
    KEEP_CONSISTENCY,
    SurrogateBank,
    main,
    painted_labels,
)
from streamanon.models.faceres import MALE_AT

log = logging.getLogger("relabel")

#: Photos the composites are painted into: persons of ``identities_extra`` that are neither in
#: the evaluation folders (``identities/``: dlib_johns, face_recognition_knn_examples,
#: face-api.js_bbt; the data's exclusion check) nor the bank's CelebA-HQ sources.
RELABEL_SOURCES = (
    "identities_extra/exadel-inc__CompreFace",  # LFW press photos, 250 px, face ~110 px
    "identities_extra/bagashvilit__facial_recognition_bias",  # UTKFace aligned crops, 200 px
)
#: Youngest FaceRes age of a photo painted into: the bank has no child composite.
ADULT = AGE_BANDS[0][1]


def pick_photos(folder: Path, per_gender: int, seed: int, hog: Any, faceres: Any) -> list[tuple[Any, float]]:
    """``per_gender`` adult persons FaceRes reads as men and as many as women from ``folder``
    (``<person>/<photo>``; the first photo of each person, persons in a seeded order): their
    ``eval.identity.Reference`` and FaceRes's probability of male of the original."""
    from streamanon.eval.data import load_identities
    from streamanon.eval.identity import build_references

    first: dict[str, Any] = {}
    for item in load_identities([folder]):
        first.setdefault(item.identity, item)
    persons = sorted(first)
    order = np.random.default_rng(seed).permutation(len(persons))
    want = {True: per_gender, False: per_gender}
    out: list[tuple[Any, float]] = []
    for i in order:
        refs, _ = build_references([first[persons[int(i)]]], hog)
        if not refs:
            continue
        a = faceres.analyse(refs[0].image, [refs[0].face])[0]
        male = bool(a.male >= MALE_AT)
        if a.age < ADULT or not want[male]:
            continue
        want[male] -= 1
        out.append((refs[0], float(a.male)))
        if not any(want.values()):
            break
    if any(want.values()):
        log.warning("%s: %s men and %s women short", folder, want[True], want[False])
    return out


def paint_readings(bank: SurrogateBank, photos: list[tuple[Any, float]], hog: Any, faceres: Any) -> np.ndarray:
    """(composites, photos): FaceRes's probability of male of each composite painted through
    the product into each photo (NaN where the product failed on the photo)."""
    from streamanon.config import AnonymizeConfig, PipelineConfig
    from streamanon.errors import AnonymizationError
    from streamanon.eval.natural import attributes_at
    from streamanon.eval.product import MethodSpec, ProductRunner

    out = np.full((len(bank), len(photos)), np.nan)
    runner = ProductRunner(PipelineConfig())
    with tempfile.TemporaryDirectory() as tmp:  # one-composite banks: composites only, no raw face
        for c in range(len(bank)):
            path = Path(tmp) / f"composite{c}.npz"
            bank.only(c).save(path)
            spec = MethodSpec(f"surrogate#{c}", AnonymizeConfig(method="surrogate", seed=0, face_bank=str(path)))
            for p, (ref, _) in enumerate(photos):
                try:
                    painted = runner.run(ref.image, spec).image
                except AnonymizationError as exc:
                    log.warning("composite %d on %s: the product failed (%s)", c, ref.path, exc)
                    continue
                out[c, p] = attributes_at(faceres, painted, ref.face.box, hog)[1]
            log.info("composite %d: read male on %d of %d photos", c, int((out[c] >= MALE_AT).sum()), len(photos))
    return out


#: Consistency thresholds ``split_half`` reports (the choice of ``KEEP_CONSISTENCY``).
THRESHOLDS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)


def split_half(male: np.ndarray, original_male: np.ndarray, splits: int = 500, seed: int = 0) -> list[str]:
    """Per threshold of ``THRESHOLDS``: labels from a random half of the photos, and the share of
    the other half's paintings of men (women) in the composites ``--keep gender`` would then draw
    for a man (woman) that FaceRes reads as a man (woman), over ``splits`` random halves."""
    rng = np.random.default_rng(seed)
    n = male.shape[1]
    lines = []
    for t in THRESHOLDS:
        agree, pools = [], []
        for _ in range(splits):
            perm = rng.permutation(n)
            a, b = perm[: n // 2], perm[n // 2 :]
            gender, consistency = painted_labels(male[:, a])
            row, sizes = [], []
            for g, is_male in (("male", True), ("female", False)):
                pool = (gender == g) & (consistency >= t)
                cols = b[original_male[b] == is_male]
                sizes.append(int(pool.sum()))
                read = (male[np.ix_(pool, cols)] >= MALE_AT) == is_male
                row.append(float(read.mean()) if read.size else np.nan)
            agree.append(row)
            pools.append(sizes)
        share = np.array(agree)
        m = [float(np.nanmean(c)) if np.isfinite(c).any() else np.nan for c in share.T]
        p = np.mean(pools, 0)
        lines.append(f"{t:.2f}: held-out agreement man {m[0]:.3f} woman {m[1]:.3f} (composites {p[0]:.1f}/{p[1]:.1f})")
    return lines


def relabel(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python engines/build_surrogate_bank.py relabel")
    p.add_argument("bank", nargs="?", type=Path, default=Path("engines/surrogate-bank.npz"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="shared data root")
    p.add_argument("-o", "--output", type=Path, help="default: the bank itself")
    p.add_argument("--per-gender", type=int, default=20, help="men and women per source folder (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every painting's FaceRes reading here")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from streamanon.models.faceres import FaceResRecogniser
    from streamanon.models.recognizer import DlibRecogniser

    bank = SurrogateBank.load(ns.bank)
    hog = DlibRecogniser("hog", 1)
    faceres = FaceResRecogniser(locator=hog)
    photos = [ph for src in RELABEL_SOURCES for ph in pick_photos(ns.data / src, ns.per_gender, ns.seed, hog, faceres)]
    male = paint_readings(bank, photos, hog, faceres)
    gender, consistency = painted_labels(male)
    out = ns.output or ns.bank
    bank.relabelled(gender, consistency).save(out)
    orig_male = np.array([m >= MALE_AT for _, m in photos])
    for c in range(len(bank)):
        on = {g: float(np.nanmean(male[c, orig_male == (g == "male")] >= MALE_AT)) for g in ("male", "female")}
        print(
            f"composite {c:2d}: tile {bank.gender[c]:6s} painted {gender[c]:6s} {consistency[c]:.2f}"
            f" (read male on men {on['male']:.2f}, on women {on['female']:.2f})"
        )
    for g in ("male", "female"):
        n = int(((gender == g) & (consistency >= KEEP_CONSISTENCY)).sum())
        print(f"{g}: {n} composites painted {g} at consistency >= {KEEP_CONSISTENCY}")
    print("\n".join(split_half(male, orig_male)))
    if ns.json:
        rows = [{"photo": ref.path, "original_male": m} for ref, m in photos]
        ns.json.write_text(json.dumps({"photos": rows, "male": np.round(male, 4).tolist()}, indent=1))
    print(f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}  {out}")
    return 0


def build(argv: list[str]) -> int:
    code = main(["build", *argv])
    out = Path(argv[argv.index("-o") + 1]) if "-o" in argv else Path("engines/surrogate-bank.npz")
    print(f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}  {out}")
    return code


def split_half_json(argv: list[str]) -> int:
    """``split-half FILE``: ``split_half`` of a relabel's ``--json`` (no painting)."""
    if len(argv) != 1:
        print("usage: python engines/build_surrogate_bank.py split-half RELABEL.json", file=sys.stderr)
        return 2
    d = json.loads(Path(argv[0]).read_text())
    orig_male = np.array([r["original_male"] >= MALE_AT for r in d["photos"]])
    print("\n".join(split_half(np.array(d["male"], np.float64), orig_male)))
    return 0


def run(args: list[str]) -> int:
    """The command of ``args``; a bad input is one line on stderr and exit status 1."""
    from streamanon.errors import StreamanonError

    commands = {"relabel": relabel, "split-half": split_half_json}
    try:
        return commands[args[0]](args[1:]) if args[:1] and args[0] in commands else build(args)
    except (StreamanonError, OSError, ValueError, KeyError) as exc:  # KeyError, ValueError: not a relabel's json
        print(
            f"build_surrogate_bank.py: {exc!r}" if isinstance(exc, KeyError) else f"build_surrogate_bank.py: {exc}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
