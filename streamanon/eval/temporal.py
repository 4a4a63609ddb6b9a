"""``eval temporal CLIP...``: what a method does over time and to the rest of the frame.

Each method runs through the product (``runner.process_file``, the run's encoder settings)
on each clip; the output is decoded and compared with the decoded original frame by frame:

* ``psnr_outside``: PSNR of every pixel outside the product's masks (pooled over frames):
  what the method changed beyond the faces, next to what the encoder alone changes (``solid``
  replaces nothing outside its masks, so it is the reference);
* ``flicker_ratio``: mean frame-to-frame change inside the faces (pixels in the masks of
  both frames) divided by the original's (1: the face changes as much as the real one; far
  above 1: the replacement flickers; 0: a constant fill);
* on every ``every``-th frame, dlib's faces in the ORIGINAL, embedded there and at the same
  landmarks in the output (as ``eval video``): ``leakage`` (distance < the recogniser's
  threshold), ``dlib_survival`` (dlib still finds a face there, IoU >= 0.5) and
  ``product_survival`` (the product's own detector still finds the face it found in the
  original, IoU >= 0.5);
* ``intra_track_distance``: mean recogniser distance between the output faces of one track
  (pairs of sampled frames; under the threshold = "the same person"), beside the original's
  (the real person against themself), and ``intra_track_same``: share of those pairs under
  the threshold;
* ``inter_track_distance``: the same between the output faces of DIFFERENT tracks of the
  clip (per pair of tracks, the median over their sample pairs; mean over track pairs),
  beside the original's, and ``inter_track_same``: the share of track pairs under the
  threshold, i.e. two tracks that got the same synthetic person (a collision);
* attribute drift on the same faces (``eval.attributes``): dlib's 68 points are fitted on
  the original and, at the same box, on the output; ``pose_drift_yaw|pitch|roll``: mean
  absolute difference of the head pose angles (degrees, generic 3D head), ``mouth_agreement``:
  share of faces whose mouth is open in both or closed in both (``mouth_open_original``:
  share open in the original, the base rate); with FaceRes built (``engines/faceres.onnx``),
  ``age_drift``: mean absolute difference of its age estimates (years) and
  ``gender_agreement``: share with the same gender call, both at the original's landmarks.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..anonymize.mask import union_mask
from ..config import PipelineConfig
from ..errors import ModelError
from ..io import VideoSource
from ..models.faceres import BUILD_COMMAND, FaceResRecogniser, model_path
from ..models.landmarks import Landmarker68
from ..models.recognizer import Recogniser, distance
from ..pipeline import Stages
from ..runner import process_file
from ..track.association import box_iou
from ..types import SOURCE_DETECTOR, SOURCE_TRACK, Detections
from .attributes import head_pose, mouth_open, pose_difference
from .product import MethodSpec

log = logging.getLogger(__name__)

SURVIVAL_IOU = 0.5
#: A dlib face belongs to the product row (and its track) it overlaps at least this much.
TRACK_IOU = 0.3


def dets_from_records(records: Sequence[dict[str, Any]]) -> Detections:
    """``Detections`` back from a run report's per-frame ``faces`` (``Detections.to_records``)."""
    if not records:
        return Detections.empty()
    xyxy = np.array([r["box"] for r in records], np.float32)
    lms = np.array(
        [r["landmarks"] if r.get("landmarks") is not None else np.full((5, 2), np.nan) for r in records], np.float32
    )
    tid = np.array([r.get("track_id", -1) for r in records], np.int64)
    src = np.array([SOURCE_TRACK if r.get("source") == "track" else SOURCE_DETECTOR for r in records], np.uint8)
    return Detections(xyxy, np.array([r["score"] for r in records], np.float32), lms, tid, src)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


class AttributeDrift:
    """Pose, mouth, age and gender of the original's faces against the output's.

    Args:
        landmarker: ``(image, boxes) -> (N, 68, 2)`` (``models.landmarks.Landmarker68``).
        faceres: a ``FaceResRecogniser`` (age and gender) or None to skip them.
    """

    def __init__(self, landmarker: Any, faceres: Any = None) -> None:
        self.landmarker, self.faceres = landmarker, faceres
        self.pose: list[tuple[float, float, float]] = []
        self.mouth: list[tuple[bool, bool]] = []
        self.age: list[float] = []
        self.gender: list[bool] = []

    def add(self, original: NDArray[np.uint8], output: NDArray[np.uint8], faces: Sequence[Any]) -> None:
        if not faces:
            return
        h, w = original.shape[:2]
        boxes = np.stack([f.box for f in faces]).astype(np.float32)
        lo, la = self.landmarker(original, boxes), self.landmarker(output, boxes)
        for a, b in zip(lo, la, strict=True):
            po, pa = head_pose(a, w, h), head_pose(b, w, h)
            if po is not None and pa is not None:
                self.pose.append(pose_difference(po, pa))
            mo, ma = mouth_open(a), mouth_open(b)
            if mo is not None and ma is not None:
                self.mouth.append((mo, ma))
        if self.faceres is not None:
            for ao, aa in zip(self.faceres.analyse(original, faces), self.faceres.analyse(output, faces), strict=True):
                self.age.append(abs(ao.age - aa.age))
                self.gender.append(ao.gender == aa.gender)

    def scores(self) -> dict[str, Any]:
        pose = np.array(self.pose, np.float64).reshape(-1, 3)
        return {
            "attribute_faces": len(self.pose),
            "pose_drift_yaw": float(pose[:, 0].mean()) if len(pose) else None,
            "pose_drift_pitch": float(pose[:, 1].mean()) if len(pose) else None,
            "pose_drift_roll": float(pose[:, 2].mean()) if len(pose) else None,
            "mouth_agreement": _mean([float(a == b) for a, b in self.mouth]),
            "mouth_open_original": _mean([float(a) for a, _ in self.mouth]),
            "age_drift": _mean(self.age),
            "gender_agreement": _mean([float(g) for g in self.gender]),
        }


def track_pair_scores(
    tracks: dict[int, tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]]], threshold: float
) -> dict[str, Any]:
    """Inter-track distances (module doc) from per-track (output, original) embeddings."""
    meds_a: list[float] = []
    meds_o: list[float] = []
    ids = [t for t, (ta, _) in tracks.items() if ta]
    for i, j in itertools.combinations(ids, 2):
        (ai, oi), (aj, oj) = tracks[i], tracks[j]
        meds_a.append(float(np.median(distance(np.stack(ai), np.stack(aj)))))
        meds_o.append(float(np.median(distance(np.stack(oi), np.stack(oj)))))
    return {
        "inter_track_pairs": len(meds_a),
        "inter_track_distance": _mean(meds_a),
        "inter_track_distance_original": _mean(meds_o),
        "inter_track_same": _mean([float(m < threshold) for m in meds_a]),
        "inter_track_same_original": _mean([float(m < threshold) for m in meds_o]),
    }


def score_output(
    original: str | Path,
    anonymised: str | Path,
    per_frame: Sequence[dict[str, Any]],
    config: PipelineConfig,
    rec: Recogniser,
    detector: Any,
    every: int = 5,
    drift: AttributeDrift | None = None,
) -> dict[str, Any]:
    """Compare one anonymised clip with its original (module doc); ``per_frame``: the run
    report's frame records (the masks), ``detector``: the product's (``images -> [Detections]``),
    ``drift``: collects the attribute drift (skipped when None)."""
    a = config.anonymize
    by_index = {int(r["index"]): dets_from_records(r["faces"]) for r in per_frame}
    score = _OutputScore()
    with VideoSource(original, audio=False) as so, VideoSource(anonymised, audio=False) as sa:
        for fo, fa in zip(so, sa, strict=False):
            score.frames += 1
            o, an = fo.image, fa.image
            h, w = o.shape[:2]
            dets = by_index.get(fo.index, Detections.empty())
            score.pixels(o, an, union_mask(dets, w, h, a.shape, a.mask_scale, a.mask_margin))
            if fo.index % every:
                continue
            score.product_faces_survive(dets, an, detector)
            score.identity(o, an, dets, rec, drift)
    out = score.result(rec.threshold)
    if drift is not None:
        out |= drift.scores()
    return out


_TrackEmbeddings = tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]]


@dataclasses.dataclass
class _OutputScore:
    """What ``score_output`` measured so far."""

    frames: int = 0
    sq_out: float = 0.0  # squared error outside the masks
    n_out: int = 0
    change_anon: float = 0.0  # frame-to-frame change inside masks present in both frames
    change_orig: float = 0.0
    prev: tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.bool_]] | None = None
    leaks: int = 0
    checked: int = 0
    dlib_found: int = 0
    product_found: int = 0
    product_faces: int = 0
    tracks: dict[int, _TrackEmbeddings] = dataclasses.field(default_factory=dict)  # anonymised, original

    def pixels(self, o: NDArray[np.uint8], an: NDArray[np.uint8], mask: NDArray[np.bool_]) -> None:
        """Error outside the masks; flicker inside them (against the previous frame)."""
        diff = o[~mask].astype(np.float64) - an[~mask]
        self.sq_out += float((diff**2).sum())
        self.n_out += diff.size
        if self.prev is not None:
            both = mask & self.prev[2]
            if both.any():
                self.change_anon += float(np.abs(an[both].astype(np.float64) - self.prev[1][both]).sum())
                self.change_orig += float(np.abs(o[both].astype(np.float64) - self.prev[0][both]).sum())
        self.prev = (o, an, mask)

    def product_faces_survive(self, dets: Detections, an: NDArray[np.uint8], detector: Any) -> None:
        """Does the product's detector still find its own detections in the output?"""
        mine = dets[dets.source == SOURCE_DETECTOR]
        if len(mine):
            found = detector([an])[0]
            self.product_faces += len(mine)
            if len(found):
                self.product_found += int((box_iou(mine.xyxy, found.xyxy) >= SURVIVAL_IOU).any(1).sum())

    def identity(
        self,
        o: NDArray[np.uint8],
        an: NDArray[np.uint8],
        dets: Detections,
        rec: Recogniser,
        drift: AttributeDrift | None,
    ) -> None:
        """The recogniser's faces of the original: leaked, found again, embeddings per track."""
        faces = rec.detect(o)
        if not faces:
            return
        e_o, e_a = rec.embed(o, faces), rec.embed(an, faces)
        if drift is not None:
            drift.add(o, an, faces)
        d = np.sqrt(((e_o - e_a) ** 2).sum(1))
        self.checked += len(faces)
        self.leaks += int((d < rec.threshold).sum())
        again = rec.detect(an)
        boxes = np.stack([f.box for f in faces])
        if again:
            self.dlib_found += int((box_iou(boxes, np.stack([f.box for f in again])) >= SURVIVAL_IOU).any(1).sum())
        if len(dets):
            iou = box_iou(boxes, dets.xyxy)
            for k in range(len(faces)):
                j = int(np.argmax(iou[k]))
                tid = int(dets.track_id[j])
                if iou[k, j] >= TRACK_IOU and tid >= 0:
                    ta, to = self.tracks.setdefault(tid, ([], []))
                    ta.append(e_a[k])
                    to.append(e_o[k])

    def result(self, threshold: float) -> dict[str, Any]:
        pairs_a: list[float] = []
        pairs_o: list[float] = []
        for ta, to in self.tracks.values():
            for i, j in itertools.combinations(range(len(ta)), 2):
                pairs_a.append(float(distance(ta[i][None], ta[j][None])[0, 0]))
                pairs_o.append(float(distance(to[i][None], to[j][None])[0, 0]))
        mse = self.sq_out / self.n_out if self.n_out else 0.0
        checked = self.checked
        out: dict[str, Any] = {
            "frames": self.frames,
            "psnr_outside": 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse)),
            "flicker_ratio": self.change_anon / self.change_orig if self.change_orig else None,
            "faces_checked": checked,
            "leakage": self.leaks / checked if checked else None,
            "dlib_survival": self.dlib_found / checked if checked else None,
            "product_survival": self.product_found / self.product_faces if self.product_faces else None,
            "tracks_scored": sum(1 for ta, _ in self.tracks.values() if len(ta) > 1),
            "intra_track_pairs": len(pairs_a),
            "intra_track_distance": _mean(pairs_a),
            "intra_track_distance_original": _mean(pairs_o),
            "intra_track_same": _mean([float(p < threshold) for p in pairs_a]),
        }
        return out | track_pair_scores(self.tracks, threshold)


def attribute_models(rec: Recogniser) -> tuple[Any, Any]:
    """dlib's 68-point predictor and FaceRes (None, logged, when it is not built)."""
    landmarker = Landmarker68()
    faceres = None
    if model_path().is_file():
        try:
            faceres = FaceResRecogniser(locator=rec)
        except ModelError as exc:
            log.warning("age/gender drift not measured: %s", exc)
    else:
        log.warning("age/gender drift not measured: FaceRes is not built (%s)", BUILD_COMMAND)
    return landmarker, faceres


def evaluate_temporal(
    clips: Sequence[str | Path],
    specs: Sequence[MethodSpec],
    config: PipelineConfig,
    rec: Recogniser,
    every: int = 5,
    keep: str | Path | None = None,
    attributes: bool = True,
) -> dict[str, Any]:
    """Every method on every clip through the product, scored by ``score_output``.

    Outputs go to ``keep`` (``<clip stem>.<method>.mp4``) or a temporary folder;
    ``attributes``: also measure the attribute drift (dlib's 68 points, FaceRes if built).
    """
    models = attribute_models(rec) if attributes else None
    results: dict[str, Any] = {}
    detector: Any = None
    with tempfile.TemporaryDirectory(prefix="streamanon-temporal-") as tmp:
        folder = Path(keep) if keep is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            cfg = dataclasses.replace(config, anonymize=spec.config)
            stages = Stages(cfg, detector=detector)
            detector = stages.detector  # one detector for every method and the survival check
            for clip in clips:
                clip = Path(clip)
                out = folder / f"{clip.stem}.{spec.key.replace(':', '_').replace('/', '_')}.mp4"
                log.info("%s: %s", spec.key, clip.name)
                run = process_file(clip, out, cfg, stages=stages, report_frames=True)
                drift = AttributeDrift(*models) if models is not None else None
                scores = score_output(clip, out, run.per_frame, cfg, rec, detector, every, drift)
                scores.update(
                    fps=run.fps,
                    anonymize_ms_per_face=round(1000 * run.stage_seconds.get("anonymize", 0.0) / run.faces, 2)
                    if run.faces
                    else None,
                    faces=run.faces,
                    served=run.anonymizer.get("faces"),
                )
                results.setdefault(clip.name, {})[spec.key] = scores
    return {"clips": results, "every": every, "threshold": rec.threshold}
