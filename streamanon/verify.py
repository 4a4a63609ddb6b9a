"""``--verify``: check the written output itself for faces that still match the input.

After a file is written, its output and its input are decoded in step. On every checked
frame (every frame, or every N-th with ``--verify-every N``) a detector other than the
one that chose the masks looks for faces in the OUTPUT: dlib's HOG detector proposes,
dlib's CNN (MMOD) confirms on a crop around each proposal (so that texture left by a
method is not counted as a face on HOG's word alone). Each confirmed face is embedded by
dlib's ResNet recogniser and compared with the INPUT's face at the same place in the same
frame, aligned on landmarks fitted in each image; the smaller of the two distances
(output aligned on its own landmarks, or on the input's) is kept: the worst case.
A distance below the recogniser's threshold (0.6, dlib's documented same-person value)
is a *match*: the output still shows that person's identity.

The verdict (frames checked, faces found, faces matching, the smallest distance and its
frame, and the same per track of the run) goes into the report; a match makes the run
exit with ``VerificationError.exit_code`` (10). Numbers only: no crop is kept.

Streams (live feeds) cannot decode their input again: there ``LiveVerifier`` checks
the anonymised frames handed to the encoder against the decoded input frames, on a
thread of its own, one frame at a time; frames that arrive while it is busy are not
checked (counted as ``frames_skipped``) so that the feed never waits for it.

This module is a consumer of the core (it uses the evaluation's models); the core never
imports it. Without dlib (``pip install 'streamanon[eval]'``) ``--verify`` fails with
``MissingDependencyError`` (exit 9).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .anonymize.base import FaceAnonymizer, FrameInfo
from .errors import ConfigError, ModelError, StreamanonError, VerificationError
from .io import VideoSource, is_image_path, read_image, redact
from .models.recognizer import DlibRecogniser, import_dlib, model_path
from .track.association import box_iou
from .types import Detections

log = logging.getLogger(__name__)

#: A proposal is confirmed when the CNN finds a face overlapping it at least this much (IoU).
CONFIRM_IOU = 0.3
#: The crop the CNN confirms on is the HOG box grown by this factor, scaled so the face is
#: about ``CONFIRM_FACE_PX`` pixels (the MMOD model's window is 80 px).
CONFIRM_GROW = 1.8
CONFIRM_FACE_PX = 110
#: A face found in the output belongs to the track whose masked box overlaps it most,
#: if at least this much (IoU, or the face's centre inside the box).
TRACK_IOU = 0.2

Boxes = Callable[[int], tuple[NDArray[np.int64], NDArray[np.float32]]]


def _no_boxes(index: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)


@dataclass
class Verdict:
    """What ``--verify`` found in one output (JSON-ready through ``to_dict``).

    Attributes:
        every: the frame step checked (1: every frame).
        frames_checked: output frames scanned.
        faces_found: faces the verifier's detector confirmed in those frames.
        faces_matching: of those, faces whose distance to the input face at that place
            is below ``threshold`` (the output still identifies the person).
        worst_distance: the smallest such distance (None: no face found).
        worst_frame: the frame it was measured on.
        per_track: ``{track_id: {faces_found, faces_matching, min_distance}}``; key ``-1``:
            faces found where no track was masked (the product's detector missed them).
    """

    every: int
    threshold: float
    frames_checked: int = 0
    frames_skipped: int = 0
    faces_found: int = 0
    faces_matching: int = 0
    worst_distance: float | None = None
    worst_frame: int | None = None
    matching_frames: list[int] = field(default_factory=list)
    per_track: dict[int, dict[str, Any]] = field(default_factory=dict)
    detector: str = "dlib HOG, confirmed by dlib CNN (MMOD)"
    recogniser: str = "dlib ResNet (face_recognition_models)"

    @property
    def passed(self) -> bool:
        """No face in the output matches the input face at its place."""
        return self.faces_matching == 0

    def add(self, index: int, track: int, dist: float) -> None:
        """Record one face found on frame ``index`` near ``track`` at distance ``dist``."""
        self.faces_found += 1
        match = dist < self.threshold
        if match:
            self.faces_matching += 1
            if not self.matching_frames or self.matching_frames[-1] != index:
                self.matching_frames.append(index)
        if self.worst_distance is None or dist < self.worst_distance:
            self.worst_distance, self.worst_frame = dist, index
        t = self.per_track.setdefault(track, {"faces_found": 0, "faces_matching": 0, "min_distance": None})
        t["faces_found"] += 1
        t["faces_matching"] += int(match)
        if t["min_distance"] is None or dist < t["min_distance"]:
            t["min_distance"] = round(dist, 4)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "every": self.every,
            "threshold": self.threshold,
            "frames_checked": self.frames_checked,
            "frames_skipped": self.frames_skipped,
            "faces_found": self.faces_found,
            "faces_matching": self.faces_matching,
            "worst_distance": None if self.worst_distance is None else round(self.worst_distance, 4),
            "worst_frame": self.worst_frame,
            "matching_frames": self.matching_frames[:100],
            "per_track": {str(k): v for k, v in sorted(self.per_track.items())},
            "detector": self.detector,
            "recogniser": self.recogniser,
        }

    def line(self) -> str:
        """One line for the run summary."""
        worst = "-" if self.worst_distance is None else f"{self.worst_distance:.3f} (frame {self.worst_frame})"
        verdict = "PASS" if self.passed else "FAIL: identity visible"
        return (
            f"verify {verdict}: {self.frames_checked} frames checked, {self.faces_found} faces found, "
            f"{self.faces_matching} matching the input (closest distance {worst}, threshold {self.threshold:g})"
        )

    def error(self, output: str) -> VerificationError:
        """The error a failed verdict raises (the output is kept, for the user to inspect)."""
        return VerificationError(
            f"{redact(output)}: --verify found {self.faces_matching} face(s) in the output that match the input "
            f"(closest distance {self.worst_distance:.3f} < {self.threshold:g} on frame {self.worst_frame}); "
            "the output was written but is not anonymous"
        )


#: The model files a ``Verifier`` loads (``models.recognizer.MODELS`` kinds).
VERIFIER_MODELS = ("landmarks5", "recognition", "cnn")


class Verifier:
    """dlib's HOG detector + CNN confirmation + ResNet recogniser (module doc).

    Args:
        every: check every N-th frame (1: all).
        upsample: HOG upsampling (1 finds faces down to about 40 px).
        max_side: frames larger than this are shrunk for the detectors only.

    Raises:
        MissingDependencyError: dlib or face_recognition_models is not installed (exit 9).
    """

    def __init__(self, every: int = 1, upsample: int = 1, max_side: int = 1024) -> None:
        self.every = _checked_every(every)
        self.recogniser = DlibRecogniser("hog", upsample=upsample, max_side=max_side)
        self.threshold = float(self.recogniser.threshold)
        dlib = self.recogniser._dlib
        try:
            self._cnn = dlib.cnn_face_detection_model_v1(str(model_path("cnn")))
        except RuntimeError as exc:
            raise ModelError(f"cannot load dlib's CNN face detector: {exc}") from exc
        self._lock = threading.Lock()  # dlib objects are used from one thread at a time

    def new_verdict(self) -> Verdict:
        return Verdict(self.every, self.threshold)

    # -- one frame -----------------------------------------------------------------------
    def _confirmed(self, image: NDArray[np.uint8], box: NDArray[np.float32]) -> bool:
        h, w = image.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
        half = side * CONFIRM_GROW / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return False
        scale = CONFIRM_FACE_PX / side
        crop = cv2.resize(
            np.ascontiguousarray(image[y0:y1, x0:x1]),
            (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        local = (np.array([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0], np.float32) * scale).astype(np.float32)
        for d in self._cnn(np.ascontiguousarray(crop), 0):
            r = d.rect
            cand = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1]], np.float32)
            if box_iou(local, cand)[0, 0] >= CONFIRM_IOU:
                return True
        return False

    def check_frame(
        self,
        verdict: Verdict,
        index: int,
        original: NDArray[np.uint8],
        output: NDArray[np.uint8],
        track_ids: NDArray[np.int64] | None = None,
        track_boxes: NDArray[np.float32] | None = None,
    ) -> None:
        """Scan ``output`` (frame ``index``) and compare each face found with ``original``."""
        if original.shape != output.shape:
            raise StreamanonError(
                f"frame {index}: output size {output.shape[1]}x{output.shape[0]} differs from the input's "
                f"{original.shape[1]}x{original.shape[0]}; cannot compare them"
            )
        rec = self.recogniser
        ids = np.zeros(0, np.int64) if track_ids is None else track_ids
        tboxes = np.zeros((0, 4), np.float32) if track_boxes is None else track_boxes
        with self._lock:
            verdict.frames_checked += 1
            out = np.ascontiguousarray(output)
            inp = np.ascontiguousarray(original)
            for box, _score in rec._raw_detect(out):
                if not self._confirmed(out, box):
                    continue
                own = rec.locate(out, box)
                theirs = rec.locate(inp, box)
                e_out = rec.embed(out, [own, theirs])  # the output aligned on its own points, and on the input's
                e_in = rec.embed(inp, [theirs])
                dist = float(np.linalg.norm(e_out - e_in[0], axis=1).min())
                verdict.add(index, self._track_of(box, ids, tboxes), dist)

    @staticmethod
    def _track_of(box: NDArray[np.float32], ids: NDArray[np.int64], boxes: NDArray[np.float32]) -> int:
        if not len(ids):
            return -1
        ious = box_iou(box, boxes)[0]
        j = int(np.argmax(ious))
        if ious[j] >= TRACK_IOU:
            return int(ids[j])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        inside = (boxes[:, 0] <= cx) & (cx <= boxes[:, 2]) & (boxes[:, 1] <= cy) & (cy <= boxes[:, 3])
        return int(ids[int(np.argmax(inside))]) if inside.any() else -1

    # -- one file --------------------------------------------------------------------------
    @staticmethod
    def error_from(verdict: dict[str, Any], output: str) -> VerificationError:
        """The error of a failed verdict given as its ``to_dict`` (``RunReport.verify``)."""
        v = Verdict(verdict["every"], verdict["threshold"], faces_matching=verdict["faces_matching"])
        v.worst_distance, v.worst_frame = verdict["worst_distance"], verdict["worst_frame"]
        return v.error(output)

    def check_file(self, src: str | Path, dst: str | Path, boxes: Boxes | None = None) -> Verdict:
        """Decode ``src`` and ``dst`` in step and check every ``every``-th frame of ``dst``.

        Args:
            boxes: ``index -> (track ids, xyxy)`` masked on that frame (maps faces to tracks).
        """
        verdict = self.new_verdict()
        boxes = boxes or _no_boxes
        for index, original, output in _frames_in_step(Path(src), Path(dst), self.every):
            ids, xyxy = boxes(index)
            self.check_frame(verdict, index, original, output, ids, xyxy)
        log.info("%s: %s", redact(str(dst)), verdict.line())
        return verdict


def _frames_in_step(src: Path, dst: Path, every: int) -> Iterator[tuple[int, NDArray[np.uint8], NDArray[np.uint8]]]:
    if is_image_path(src):
        yield 0, read_image(src).image, read_image(dst).image
        return
    # software decode both: the check must see the pixels any player would
    with VideoSource(src, audio=False, hwaccel="none") as a, VideoSource(dst, audio=False, hwaccel="none") as b:
        for n, (fa, fb) in enumerate(zip(a, b, strict=False)):
            if n % every == 0:
                yield fb.index, fa.image, fb.image


def verifier_from_args(verify: bool, every: int | None) -> Verifier | None:
    """The ``Verifier`` asked for by ``--verify`` / ``--verify-every N`` (None: not asked)."""
    if not verify and every is None:
        return None
    return Verifier(every=1 if every is None else every)


def verify_every_from_args(verify: bool, every: int | None) -> int:
    """The frame step ``--verify`` / ``--verify-every N`` asks for (0: not asked), checked
    without loading the models: for a process that only hands it on (the batch driver;
    each worker builds its ``Verifier`` when it first verifies a file).

    Raises:
        ConfigError: N < 1.
        MissingDependencyError: dlib or face_recognition_models is not installed (exit 9).
        ModelError: a model file is not the registry's.
    """
    if not verify and every is None:
        return 0
    step = _checked_every(1 if every is None else every)
    import_dlib()
    for kind in VERIFIER_MODELS:
        model_path(kind)
    return step


def _checked_every(every: int) -> int:
    if every < 1:
        raise ConfigError(f"invalid --verify-every {every!r}: expected an integer >= 1")
    return every


class LiveVerifier:
    """Checks (input, output) frame pairs of a live feed on a thread of its own (module doc).

    ``offer`` never blocks: a pair offered while the previous one is still being checked
    (or that is not an ``every``-th frame) is counted as skipped.
    """

    def __init__(self, verifier: Verifier, every: int | None = None) -> None:
        self.verifier = verifier
        self.every = every or verifier.every
        self.verdict = Verdict(self.every, verifier.threshold)
        self._q: queue.Queue[Any] = queue.Queue(1)
        self._seen = 0
        self._thread = threading.Thread(target=self._work, name="streamanon-verify", daemon=True)
        self._thread.start()

    def offer(self, index: int, original: NDArray[np.uint8], output: NDArray[np.uint8], ids: Any, boxes: Any) -> None:
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        try:
            self._q.put_nowait((index, original.copy(), output.copy(), ids, boxes))
        except queue.Full:
            self.verdict.frames_skipped += 1

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            try:
                self.verifier.check_frame(self.verdict, *item)
            except Exception as exc:  # a frame the verifier cannot read is not a verdict
                log.warning("verify: frame %d not checked: %r", item[0], exc)
                self.verdict.frames_skipped += 1

    def close(self, timeout: float = 30.0) -> Verdict:
        """Finish the frame being checked; the verdict so far."""
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        return self.verdict


class VerifyingAnonymizer(FaceAnonymizer):
    """Wraps a feed's anonymiser: every frame it returns is offered to a ``LiveVerifier``
    with the frame it was given (the input's pixels) and the boxes it masked."""

    def __init__(self, inner: Any, live: LiveVerifier) -> None:
        self.inner = inner
        self.live = live
        self.name = str(getattr(inner, "name", "given"))
        self._hooks = isinstance(inner, FaceAnonymizer)

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        if self._hooks:
            self.inner.track_started(track_id, info)

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        if self._hooks:
            self.inner.track_ended(track_id, info)

    def report(self) -> dict[str, Any]:
        rep: dict[str, Any] = self.inner.report() if self._hooks else {}
        return rep

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out: NDArray[np.uint8] = self.inner.apply(image, dets, info) if self._hooks else self.inner.apply(image, dets)
        self.live.offer(-1 if info is None else info.index, image, out, dets.track_id, dets.xyxy)
        return out


class VerifyingFactory:
    """An anonymiser factory whose anonymisers are wrapped by ``VerifyingAnonymizer``
    (everything else, e.g. ``pooled`` or ``load_bank``, is the wrapped factory's)."""

    def __init__(self, inner: Any, live: LiveVerifier) -> None:
        self._inner = inner
        self.live = live

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, **kwargs: Any) -> VerifyingAnonymizer:
        return VerifyingAnonymizer(self._inner(**kwargs), self.live)


def verify_line(v: dict[str, Any]) -> str:
    """The summary line of a ``--verify`` verdict (``RunReport.verify``)."""
    worst = "-" if v["worst_distance"] is None else f"{v['worst_distance']:.3f} (frame {v['worst_frame']})"
    return (
        f"verify {'PASS' if v['passed'] else 'FAIL: identity visible'}: {v['frames_checked']} frames checked, "
        f"{v['faces_found']} faces found, {v['faces_matching']} matching the input (closest distance {worst})"
    )
