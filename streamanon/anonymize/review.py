"""``--review``: draw what was detected instead of anonymising it, to check a run.

The output shows every face in the clear, with the box the anonymiser would mask, the
detector's score and the track id: green for a detection of this frame, orange for a
box the tracker carried (coasting or look-back), which the anonymiser masks too. It is
never the default and never anonymised: the CLI prints a warning that says so, names
the output ``*_review.*`` by default, and refuses live inputs and outputs (a review
stream must not be published; see ``docs/usage.md``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..io.uri import is_live
from ..types import SOURCE_DETECTOR, Detections
from .base import FaceAnonymizer, FrameInfo

log = logging.getLogger(__name__)

__all__ = ["NOT_ANONYMISED", "ReviewDrawer", "review_from_args", "review_output"]

#: The warning printed for every review run.
NOT_ANONYMISED = (
    "--review: the output is NOT anonymised: it shows every face in the clear with its box, score "
    "and track id, to check what a run detects; do not publish it"
)

BANNER = "REVIEW - NOT ANONYMISED"
DETECTED_RGB = (0, 220, 0)
TRACKED_RGB = (255, 140, 0)


def review_output(path: str | Path) -> Path:
    """The default output of a review run: ``clip_review.mp4`` beside the input, a folder's
    ``folder_review`` (never ``*_anonymized``)."""
    p = Path(path)
    return p.with_name(f"{p.name}_review") if p.is_dir() else p.with_name(f"{p.stem}_review{p.suffix}")


def review_from_args(ns: argparse.Namespace) -> ReviewDrawer | None:
    """``--review`` on the main command: None without it; with it, refuses live inputs and
    outputs (ConfigError, exit 2), names the output ``*_review`` unless ``-o`` is given,
    logs :data:`NOT_ANONYMISED` and returns the drawer to run instead of the anonymiser."""
    if not getattr(ns, "review", False):
        return None
    if is_live(ns.input) or (ns.output and is_live(ns.output)):
        raise ConfigError(
            "--review is for files and folders, not live inputs or outputs (its output is not anonymised)"
        )
    if not ns.output:
        if getattr(ns, "more_inputs", None):
            raise ConfigError("--review with several inputs needs -o FOLDER (its outputs are not anonymised)")
        ns.output = str(review_output(ns.input))
    log.warning("%s (writing %s)", NOT_ANONYMISED, ns.output)
    return ReviewDrawer()


class ReviewDrawer(FaceAnonymizer):
    """An "anonymiser" that draws boxes, scores and track ids and masks nothing."""

    name = "review"

    def __init__(self) -> None:
        self.frames = 0
        self.boxes = 0

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = np.ascontiguousarray(image).copy()
        self.frames += 1
        self.boxes += len(dets)
        h, w = out.shape[:2]
        thick = max(1, round(max(h, w) / 400))
        scale = max(0.4, max(h, w) / 1600)
        (bw, bh), bb = cv2.getTextSize(BANNER, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(out, (0, 0), (bw + 8, bh + bb + 8), (255, 0, 0), -1)
        cv2.putText(out, BANNER, (4, bh + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        for box, score, tid, src in zip(dets.xyxy, dets.score, dets.track_id, dets.source, strict=True):
            x0, y0, x1, y1 = (round(float(v)) for v in box)
            colour = DETECTED_RGB if src == SOURCE_DETECTOR else TRACKED_RGB
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
            label = f"{score:.2f}" + (f" #{tid}" if tid >= 0 else "") + ("" if src == SOURCE_DETECTOR else " trk")
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            ty = y0 - base - 2 if y0 - th - base - 2 >= 0 else y1 + th + 2
            cv2.rectangle(out, (x0, ty - th - 1), (x0 + tw + 2, ty + base), colour, -1)
            cv2.putText(out, label, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
        return out

    def report(self) -> dict[str, Any]:
        return {"review": True, "anonymised": False, "warning": NOT_ANONYMISED, "boxes_drawn": self.boxes}
