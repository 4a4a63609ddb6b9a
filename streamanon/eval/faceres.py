"""FaceRes's validation: how well it separates same from different people on the shared data.

``python -m streamanon.eval.faceres validate [DATA]``. The model itself (loading, chips,
``FaceResRecogniser``) is ``streamanon.models.faceres``.
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

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, StreamanonError
from ..io import read_image
from ..models.faceres import DEFAULT_ONNX, FaceResRecogniser
from ..models.recognizer import Recogniser
from .data import load_identities

log = logging.getLogger(__name__)


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


def pair_auc(dist: NDArray[np.floating[Any]], same: NDArray[np.bool_]) -> float:
    """ROC AUC of "smaller distance = same person" over pairs (ties count half; O(n log n)).

    Raises:
        ConfigError: no same or no different pair.
    """
    from scipy.stats import rankdata

    d = np.asarray(dist, np.float64).ravel()
    s = np.asarray(same, np.bool_).ravel()
    n_s, n_d = int(s.sum()), int((~s).sum())
    if not n_s or not n_d:
        raise ConfigError(f"separation needs same and different pairs (got {n_s} and {n_d})")
    ranks = rankdata(-d)  # a larger rank is a smaller distance
    return float((ranks[s].sum() - n_s * (n_s + 1) / 2) / (n_s * n_d))


def separation(dist: NDArray[np.floating[Any]], same: NDArray[np.bool_], fmr: float = 0.01) -> Separation:
    """ROC AUC and the threshold at ``fmr`` false matches of pair distances.

    The threshold is the ``floor(fmr * n_different)``-th smallest different-pair
    distance: "same person" is ``distance < threshold``, so at most that many
    different pairs match.
    """
    d = np.asarray(dist, np.float64).ravel()
    s = np.asarray(same, np.bool_).ravel()
    auc = pair_auc(d, s)
    n_s, n_d = int(s.sum()), int((~s).sum())
    diff = np.sort(d[~s])
    thr = float(diff[int(np.floor(fmr * n_d))])
    return Separation(auc, thr, fmr, float((d[s] < thr).mean()), n_s, n_d)


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
