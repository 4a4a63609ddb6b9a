"""``eval natural``: does a replaced face look like a real one?

Three measures, per method, on identity photos run through the product:

* **Two-sample classifier test.** FaceRes features (``eval.faceres``) of every original face
  and of its replacement, each chip aligned on dlib's five points fitted to *that* image (the
  replaced face's landmarks are fitted on the replaced image inside the original's box, never
  borrowed from the original). A ridge-regularised logistic regression tries to tell the two
  classes apart; it is cross-validated with folds grouped by identity, so a photo, its
  replacement and every other photo of the person are always in the same fold. Out-of-fold
  accuracy 0.5 = the replacements cannot be told from real faces; 1.0 = always told apart. An
  unchanged copy scores 0.5 exactly (each original and its copy get the same prediction); a
  blur scores ~1.0.
* **Face detectors.** dlib's HOG and CNN (MMOD) detectors on a window around the face, in
  the original and in the replacement: found (IoU >= 0.5 with dlib's box of the original)
  and the detector's score.
* **By face size** (dlib box of the original, square root of its area): < 48, 48-128, >= 128 px.
  Identity photos are mostly portraits; ``--face-px PX`` scales each photo down so that its
  face is PX px (``at_face_size``), which fills the < 48 px band with CCTV-size faces.

Every photo is its own run of the product: with a fixed ``--seed`` each photo's run gets its
own secret derived from the seed and the photo's index (``photo_seed``), as separate runs with
fresh secrets would; with one secret for all, a method that draws from it (``surrogate``'s
composite, one per track) painted the same drawn face into every photo, and the classifier
measured one face.

A grid of originals and replacements is written only where the user asks (``--grid PATH``):
it holds raw faces.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import AnonymizationError, SinkError
from ..models.faceres import MALE_AT
from ..models.recognizer import Face, Recogniser
from ..track.association import box_iou
from .identity import Reference, face_crop
from .product import MethodSpec, ProductRunner

log = logging.getLogger(__name__)

#: Face size bands (px, dlib box of the original): CCTV, video, portrait.
SIZE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<48", 0.0, 48.0),
    ("48-128", 48.0, 128.0),
    (">=128", 128.0, math.inf),
)
#: A detection in the replaced image matches the original face at this IoU.
FOUND_IOU = 0.5
#: Ridge penalty of the classifier (on standardised features, per sample; chosen before measuring).
RIDGE = 1.0
#: Cross-validation folds (fewer when there are fewer identities).
FOLDS = 5
#: Faces in the detector window are scaled to this size, and the detectors run without
#: upsampling (dlib's HOG window is 80 px; its CNN on a 600 px face is slow on CPU).
DETECT_FACE_PX = 100.0


# -- the classifier ---------------------------------------------------------------------
def fit_ridge_logistic(
    x: NDArray[np.floating[Any]], y: NDArray[np.floating[Any]], ridge: float = RIDGE
) -> NDArray[np.float64]:
    """Weights (last entry: bias) of an L2-regularised logistic regression, by L-BFGS.

    Loss: mean log-loss + ``ridge`` x |w|^2 / n (bias not penalised).
    """
    from scipy.optimize import minimize

    xa = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
    s = 2.0 * np.asarray(y, np.float64) - 1.0  # labels in {-1, +1}
    n = len(xa)

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = s * (xa @ w)
        val = float(np.logaddexp(0.0, -z).mean())
        grad = -(xa.T @ (s * _sigmoid(-z))) / n
        pen = w.copy()
        pen[-1] = 0.0
        return val + ridge * float(pen @ pen) / n, grad + 2.0 * ridge * pen / n

    res = minimize(loss, np.zeros(xa.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    out: NDArray[np.float64] = np.asarray(res.x, np.float64)
    return out


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def group_folds(groups: Sequence[str], folds: int = FOLDS, seed: int = 0) -> list[NDArray[np.intp]]:
    """Row indices of each test fold: whole groups, shuffled by ``seed``, dealt round-robin."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    k = max(2, min(folds, len(names)))
    fold_of = {g: i % k for i, g in enumerate(order)}
    g = np.array([fold_of[x] for x in groups])
    return [np.flatnonzero(g == i) for i in range(k)]


def two_sample_predictions(
    real: NDArray[np.floating[Any]],
    fake: NDArray[np.floating[Any]],
    groups: Sequence[str],
    folds: int = FOLDS,
    ridge: float = RIDGE,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Out-of-fold probabilities of "replaced" for the real rows and the replaced rows.

    ``real[i]`` and ``fake[i]`` are one photo's original and replaced face; ``groups[i]`` its
    identity (the fold unit). Features are standardised on each training fold.
    """
    if len(real) != len(fake) or len(real) != len(groups):
        raise ValueError("real, fake and groups must have one row per photo")
    if len(set(groups)) < 2:
        raise ValueError("the classifier test needs at least two identities")
    p_real = np.full(len(real), np.nan)
    p_fake = np.full(len(fake), np.nan)
    for test in group_folds(groups, folds, seed):
        train = np.setdiff1d(np.arange(len(real)), test)
        xt = np.vstack([real[train], fake[train]]).astype(np.float64)
        yt = np.r_[np.zeros(len(train)), np.ones(len(train))]
        mu, sd = xt.mean(0), xt.std(0) + 1e-6
        w = fit_ridge_logistic((xt - mu) / sd, yt, ridge)

        def prob(a: NDArray[Any], w: NDArray[np.float64] = w, mu: Any = mu, sd: Any = sd) -> NDArray[np.float64]:
            return _sigmoid(((np.asarray(a, np.float64) - mu) / sd) @ w[:-1] + w[-1])

        p_real[test] = prob(real[test])
        p_fake[test] = prob(fake[test])
    return p_real, p_fake


def accuracy(p_real: NDArray[np.float64], p_fake: NDArray[np.float64]) -> float | None:
    """Share of rows classified right at 0.5 (a tie counts half): 0.5 = indistinguishable."""
    if not len(p_real):
        return None
    right = (p_real < 0.5) + 0.5 * (p_real == 0.5)
    right_f = (p_fake > 0.5) + 0.5 * (p_fake == 0.5)
    return float((right.sum() + right_f.sum()) / (len(p_real) + len(p_fake)))


# -- the detectors ----------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    """What a detector says about one face: found (IoU >= FOUND_IOU) and its best score."""

    found: bool
    score: float | None


def detect_near(detector: Recogniser, image: NDArray[np.uint8], box: NDArray[np.float32]) -> Found:
    """Run ``detector`` on a window around ``box`` (the face scaled to DETECT_FACE_PX)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0)
    h, w = image.shape[:2]
    a, b = max(0, round(x0 - side)), max(0, round(y0 - side))
    c, d = min(w, round(x1 + side)), min(h, round(y1 + side))
    crop: NDArray[np.uint8] = image[b:d, a:c]
    f = DETECT_FACE_PX / side
    if f != 1.0:
        crop = np.asarray(
            cv2.resize(
                crop,
                (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
            ),
            np.uint8,
        )
    want = (np.array([x0 - a, y0 - b, x1 - a, y1 - b], np.float32) * f)[None]
    best: float | None = None
    hit = False
    for face in detector.detect(np.ascontiguousarray(crop)):
        if float(box_iou(face.box[None].astype(np.float32), want)[0, 0]) >= FOUND_IOU:
            hit = True
            best = face.score if best is None else max(best, face.score)
    return Found(hit, best)


# -- the evaluation ---------------------------------------------------------------------
@dataclass
class Scored:
    """One face after one method (features of the replaced face, detector results)."""

    features: NDArray[np.float32]
    hog: Found
    cnn: Found | None
    crop: NDArray[np.uint8] | None = None
    male: float | None = None  # FaceRes's probability of male (where ``features`` is FaceRes)


@dataclass
class NaturalResult:
    """Every face of one method, in reference order."""

    key: str
    faces: list[Scored] = field(default_factory=list)


def size_band(size: float) -> str:
    """The ``SIZE_BANDS`` name of a face size in pixels."""
    for name, lo, hi in SIZE_BANDS:
        if lo <= size < hi:
            return name
    return SIZE_BANDS[-1][0]


def at_face_size(ref: Reference, px: float) -> Reference:
    """``ref`` with its photo scaled down (area interpolation, as a camera further away would
    see it) so that its face's size (``Face.size``) is ``px``; a face already that small or
    smaller is left as it is. The box and landmarks are scaled with the photo."""
    scale = px / max(ref.face.size, 1e-6)
    if scale >= 1.0:
        return ref
    h, w = ref.image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image: NDArray[np.uint8] = np.ascontiguousarray(cv2.resize(ref.image, size, interpolation=cv2.INTER_AREA), np.uint8)
    sx, sy = size[0] / w, size[1] / h
    box = (ref.face.box * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
    marks = (ref.face.landmarks * np.array([sx, sy], np.float32)).astype(np.float32)
    return replace(ref, image=image, face=Face(box, marks, ref.face.score))


def features_at(
    features: Any, image: NDArray[np.uint8], box: NDArray[np.float32], locator: Recogniser
) -> NDArray[np.float32]:
    """FaceRes vector of the face in ``box``, aligned on dlib's 5 points fitted in ``image`` itself."""
    return attributes_at(features, image, box, locator)[0]


def attributes_at(
    features: Any, image: NDArray[np.uint8], box: NDArray[np.float32], locator: Recogniser
) -> tuple[NDArray[np.float32], float | None]:
    """``features_at`` and, where ``features`` is FaceRes (it has ``analyse``), its probability
    of male for the same face (None otherwise)."""
    face: Face = locator.locate(image, box)  # type: ignore[attr-defined]
    if hasattr(features, "analyse"):
        a = features.analyse(image, [face])[0]
        return np.asarray(a.embedding, np.float32), float(a.male)
    out: NDArray[np.float32] = features.embed(image, [face])[0]
    return out, None


def score_method(
    refs: Sequence[Reference],
    product: ProductRunner,
    spec: MethodSpec,
    features: Any,
    hog: Recogniser,
    cnn: Recogniser | None,
    keep_rows: Sequence[int] = (),
) -> NaturalResult:
    """Run the product with ``spec`` on every reference photo and score each replaced face."""
    product.prepare([r.image for r in refs], spec)
    res = NaturalResult(spec.key)
    keep = set(keep_rows)
    for i, ref in enumerate(refs):
        try:
            out = product.run(ref.image, spec, photo=i).image
        except AnonymizationError as exc:  # the product masked the frame: it is what a viewer gets
            log.warning("%s: product failed on %s (%s); the masked frame is scored", spec.key, ref.path, exc)
            out = np.zeros_like(ref.image)
        box = ref.face.box
        vec, male = attributes_at(features, out, box, hog)
        res.faces.append(
            Scored(
                vec,
                detect_near(hog, out, box),
                detect_near(cnn, out, box) if cnn is not None else None,
                face_crop(out, box, 128) if i in keep else None,
                male,
            )
        )
    return res


def _rate(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def _mean_score(found: Sequence[Found]) -> float | None:
    s = [f.score for f in found if f.score is not None]
    return float(np.mean(s)) if s else None


def summarise(
    refs: Sequence[Reference],
    real: NDArray[np.float32],
    real_found: dict[str, list[Found]],
    result: NaturalResult,
    seed: int = 0,
    real_male: Sequence[float | None] = (),
) -> dict[str, Any]:
    """The method's row and its size bands: classifier accuracy, detectors' found rates and
    scores, and (with ``real_male``, FaceRes's probability of male of each original) the
    share of replacements of the original's FaceRes gender (``--keep gender``)."""
    fake = np.stack([f.features for f in result.faces])
    groups = [r.identity for r in refs]
    p_real, p_fake = two_sample_predictions(real, fake, groups, seed=seed)
    bands = np.array([size_band(r.face.size) for r in refs])

    def row(sel: NDArray[np.bool_]) -> dict[str, Any]:
        idx = np.flatnonzero(sel)
        faces = [result.faces[i] for i in idx]
        out: dict[str, Any] = {
            "faces": len(idx),
            "classifier_accuracy": accuracy(p_real[idx], p_fake[idx]),
            "hog_found": _rate([f.hog.found for f in faces]),
            "hog_found_original": _rate([real_found["hog"][i].found for i in idx]),
            "hog_score": _mean_score([f.hog for f in faces]),
            "hog_score_original": _mean_score([real_found["hog"][i] for i in idx]),
        }
        males = [(real_male[int(i)], result.faces[int(i)].male) for i in idx] if real_male else []
        pairs = [(a, b) for a, b in males if a is not None and b is not None]
        if pairs:  # FaceRes's gender (male at >= MALE_AT) of the replacement agrees with the original's
            out["gender_agreement"] = float(np.mean([(a >= MALE_AT) == (b >= MALE_AT) for a, b in pairs]))
        if "cnn" in real_found:
            cnn = [f.cnn for f in faces if f.cnn is not None]
            out.update(
                cnn_found=_rate([f.found for f in cnn]),
                cnn_found_original=_rate([real_found["cnn"][i].found for i in idx]),
                cnn_score=_mean_score(cnn),
                cnn_score_original=_mean_score([real_found["cnn"][i] for i in idx]),
            )
        return out

    summary = row(np.ones(len(refs), np.bool_))
    summary["ge48"] = row(bands != "<48")
    summary["by_size"] = {name: row(bands == name) for name, _, _ in SIZE_BANDS if (bands == name).any()}
    return summary


def originals(
    refs: Sequence[Reference], features: Any, hog: Recogniser, cnn: Recogniser | None
) -> tuple[NDArray[np.float32], dict[str, list[Found]], list[float | None]]:
    """FaceRes vectors of the original faces, what the detectors find of them, and FaceRes's
    probability of male of each (None where ``features`` is not FaceRes)."""
    got = [attributes_at(features, r.image, r.face.box, hog) for r in refs]
    real = np.stack([v for v, _ in got])
    found = {"hog": [detect_near(hog, r.image, r.face.box) for r in refs]}

    if cnn is not None:
        found["cnn"] = [detect_near(cnn, r.image, r.face.box) for r in refs]
    return real, found, [m for _, m in got]


def evaluate_natural(
    refs: Sequence[Reference],
    product: ProductRunner,
    specs: Sequence[MethodSpec],
    features: Any,
    hog: Recogniser,
    cnn: Recogniser | None,
    keep_rows: Sequence[int] = (),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, NaturalResult]]:
    """Every method's summary (``methods``) and raw per-face results (for the grid)."""
    real, found, males = originals(refs, features, hog, cnn)
    methods: dict[str, Any] = {}
    raw: dict[str, NaturalResult] = {}
    for spec in specs:
        if progress is not None:
            progress(spec.key)
        raw[spec.key] = score_method(refs, product, spec, features, hog, cnn, keep_rows)
        methods[spec.key] = summarise(refs, real, found, raw[spec.key], seed, males)
    return {"methods": methods}, raw


def write_grid(
    path: Path, refs: Sequence[Reference], raw: dict[str, NaturalResult], rows: Sequence[int], size: int = 128
) -> None:
    """A PNG: one row per kept face, the original then each method's replacement (raw faces!)."""
    lines = []
    for i in rows:
        tiles = [face_crop(refs[i].image, refs[i].face.box, size)]
        tiles += [r.faces[i].crop for r in raw.values() if r.faces[i].crop is not None]  # type: ignore[misc]
        lines.append(np.hstack(tiles))
    if not lines:
        return
    img = np.vstack(lines)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise SinkError(f"cannot write --grid {path}")
