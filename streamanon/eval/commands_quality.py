"""``streamanon eval detect|temporal|natural``: how well the detector finds faces, and how
the replacements look over time and to detectors.

The command functions (``eval/cli.py`` holds their parsers and the dispatch).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DetectConfig
from ..errors import ConfigError, SinkError
from ..models.faceres import FaceResRecogniser
from ..models.recognizer import DlibRecogniser
from . import report
from .commands_common import _check_outputs, _eval_config, _print_table, _recogniser, _write_json
from .data import load_annotations, load_identities
from .detection import dataset_stats, evaluate_detector, parse_det_sizes, parse_thresholds
from .identity import build_references
from .natural import at_face_size, evaluate_natural, write_grid
from .product import ProductRunner, parse_methods
from .temporal import evaluate_temporal

log = logging.getLogger(__name__)


def detect_command(ns: argparse.Namespace) -> int:
    """``eval detect``: precision/recall/AP per input size and threshold."""
    thresholds = parse_thresholds(ns.threshold)
    sizes = parse_det_sizes(ns.det_size)
    if not 0.0 < ns.iou <= 1.0:
        raise ConfigError(f"invalid --iou {ns.iou}: expected a number in (0, 1]")
    _check_outputs(ns)
    gts = load_annotations(ns.annotations, ns.images, ns.format)
    base = DetectConfig(
        threads=max(0, ns.threads),
        backend=ns.backend,
        precision=ns.precision,
        small_faces=ns.small_faces,
        tile_scale=ns.tile_scale,
        max_face_size=ns.max_face_size,
    )
    runs = [evaluate_detector(gts, s, thresholds, base=base, iou=ns.iou, min_size=ns.min_size) for s in sizes]
    out: dict[str, Any] = {
        "dataset": {**dataset_stats(gts), "annotations": str(ns.annotations), "format": ns.format},
        "settings": {"iou": ns.iou, "min_size": ns.min_size, "thresholds": thresholds},
        "runs": runs,
    }
    _write_json(ns.json, out)
    cols = [
        "det_size",
        "threshold",
        "ap",
        "precision",
        "recall",
        *(f"recall {b}" for b in runs[0]["buckets"]),
        "ms/img",
    ]
    rows = [_detect_row(run, t) for run in runs for t in thresholds]
    ds = out["dataset"]
    print(f"{ds['images']} images, {ds['faces']} faces ({ds['ignored']} ignored), IoU {ns.iou}")
    _print_table(cols, ([r[c] for c in cols] for r in rows))
    if ns.html:
        report.write_html(
            ns.html,
            "streamanon eval detect",
            [
                ("Results", report.table_html(rows, cols)),
                *[
                    (f"Recall vs face size (threshold {t:g})", report.plot_recall_vs_size(runs, f"{t:g}"))
                    for t in thresholds
                ],
            ],
        )
    return 0


def _detect_row(run: dict[str, Any], t: float) -> dict[str, Any]:
    """One line of the detect table: a run (one input size) at threshold ``t``."""
    key = f"{t:g}"
    at = run["overall"]["at"][key]
    return {
        "det_size": run["det_size"],
        "threshold": t,
        "ap": run["overall"]["ap"],
        "precision": at["precision"],
        "recall": at["recall"],
        "ms/img": run["ms_per_image"],
        **{f"recall {b}": v["at"][key]["recall"] for b, v in run["buckets"].items()},
    }


TEMPORAL_COLUMNS = (
    "clip",
    "method",
    "frames",
    "fps",
    "anonymize_ms_per_face",
    "psnr_outside",
    "flicker_ratio",
    "leakage",
    "dlib_survival",
    "product_survival",
    "intra_track_distance",
    "intra_track_distance_original",
    "intra_track_same",
    "inter_track_pairs",
    "inter_track_distance",
    "inter_track_distance_original",
    "inter_track_same",
    "inter_track_same_original",  # the real persons' own pairs: what dlib can tell apart on the clip
    "pose_drift_yaw",
    "pose_drift_pitch",
    "pose_drift_roll",
    "mouth_agreement",
    "mouth_open_original",
    "age_drift",
    "gender_agreement",
)


def temporal_command(ns: argparse.Namespace) -> int:
    """``eval temporal``: each method on each clip through the product, compared over time."""
    if ns.every < 1:
        raise ConfigError(f"invalid --every {ns.every}: expected an integer >= 1")
    config = _eval_config(ns)
    specs = parse_methods(ns.methods, config.anonymize)
    _check_outputs(ns)
    res = evaluate_temporal(
        ns.clips, specs, config, _recogniser(ns), every=ns.every, keep=ns.keep, attributes=not ns.no_attributes
    )
    res["settings"] = {"config": config.to_dict(), "seed": ns.seed}
    _write_json(ns.json, res)
    rows = [{"clip": c, "method": m, **v} for c, ms in res["clips"].items() for m, v in ms.items()]
    _print_table(TEMPORAL_COLUMNS, ([r.get(c) for c in TEMPORAL_COLUMNS] for r in rows))
    if ns.html:
        report.write_html(ns.html, "streamanon eval temporal", [("Results", report.table_html(rows, TEMPORAL_COLUMNS))])
    return 0


#: ``eval natural --face-px``: the smallest face the product paints (``surrogate.MIN_FACE``) up
#: to a portrait.
FACE_PX = (20, 1024)

NATURAL_COLUMNS = (
    "method",
    "faces",
    "classifier_accuracy",
    "hog_found",
    "hog_score",
    "cnn_found",
    "cnn_score",
    "gender_agreement",  # FaceRes gender of the replacement = the original's (--keep gender)
)


def natural_command(ns: argparse.Namespace) -> int:
    """``eval natural``: classifier test, dlib detectors and face sizes per method."""
    config = _eval_config(ns)
    specs = parse_methods(ns.methods, config.anonymize)
    product = ProductRunner(config, pad=ns.pad)
    _check_outputs(ns)
    if ns.grid is not None and not (ns.grid.parent if str(ns.grid.parent) else Path(".")).is_dir():
        raise SinkError(f"--grid: folder does not exist: {ns.grid.parent}")
    if ns.limit < 0:
        raise ConfigError(f"invalid --limit {ns.limit}: expected 0 (all) or a positive number")
    if ns.face_px is not None and not FACE_PX[0] <= ns.face_px <= FACE_PX[1]:
        raise ConfigError(f"invalid --face-px {ns.face_px:g}: expected {FACE_PX[0]}-{FACE_PX[1]} px")
    images = load_identities(ns.faces)
    if ns.limit and ns.limit < len(images):
        pick = np.random.default_rng(ns.seed).choice(len(images), size=ns.limit, replace=False)
        images = [images[i] for i in sorted(pick.tolist())]
    hog = DlibRecogniser("hog", 1)  # finds the original faces (down to ~40 px)
    refs, skipped = build_references(images, hog)
    if len({r.identity for r in refs}) < 2:
        raise ConfigError(f"dlib found faces of fewer than two identities in {len(images)} photos: nothing to compare")
    if ns.face_px is not None:  # the photos as a camera further away sees them
        refs = [at_face_size(r, ns.face_px) for r in refs]
    hog0 = DlibRecogniser("hog", 0)  # on windows with the face at 100 px
    cnn = None if ns.no_cnn else DlibRecogniser("cnn", 0)
    features = FaceResRecogniser(locator=hog)
    keep = list(range(min(ns.grid_faces, len(refs)))) if ns.grid is not None else []
    if keep:
        keep = sorted(np.random.default_rng(ns.seed).choice(len(refs), size=len(keep), replace=False).tolist())
    result, raw = evaluate_natural(
        refs, product, specs, features, hog0, cnn, keep, ns.seed, progress=lambda k: log.info("method %s", k)
    )
    info = {
        "images": len(images),
        "faces": len(refs),
        "identities": len({r.identity for r in refs}),
        "no_face_found": len(skipped),
    }
    result.update(
        dataset=info, settings={"config": config.to_dict(), "pad": ns.pad, "seed": ns.seed, "face_px": ns.face_px}
    )
    _write_json(ns.json, result)
    print(f"{info['faces']} faces, {info['identities']} identities; classifier 0.5 = replacements look real")
    for label, sub in (("all faces", None), ("faces >= 48 px", "ge48")):
        print(f"\n{label}")
        picked = ((k, m if sub is None else m[sub]) for k, m in result["methods"].items())
        _print_table(NATURAL_COLUMNS, ([k, *(r.get(c) for c in NATURAL_COLUMNS[1:])] for k, r in picked))
    print("\nby face size (classifier accuracy / hog found)")
    for k, m in result["methods"].items():
        bands = ", ".join(
            f"{b}: {report.fmt_text(v['classifier_accuracy'])} / {report.fmt_text(v['hog_found'])} (n={v['faces']})"
            for b, v in m["by_size"].items()
        )
        print(f"{k}: {bands}")
    if ns.grid is not None:
        write_grid(ns.grid, refs, raw, keep)
    return 0
