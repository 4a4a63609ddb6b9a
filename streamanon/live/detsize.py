"""Live mode's detection size: the largest network input that keeps up with the feed.

Offline, the detector runs at the frame's native resolution (at most 1920 px long side)
because small faces are found more often there (README, "Detection"), and a slower run
only takes longer. Live, a detector slower than the frame interval makes every frame wait
for the one before it: the latency grows by one detection time and frames are dropped.
On a 2-core CPU CenterFace takes ~90 ms at 1280x736, over the 40 ms a 25 fps feed allows.

So when the user did not choose ``--det-size``, live mode times the detector on this
machine at a few network sizes (a blank frame of the feed's size; the convolution cost
does not depend on content) and keeps the largest whose cost fits ``BUDGET_SHARE`` of the
frame interval, never going below ``MIN_LONG_SIDE``. The cost is in core-milliseconds: a
call's time times the threads it runs on (``threads_per_call`` of the backend), since
decoding and encoding need the other cores (a 2-thread OpenVINO call timed alone at 960
fitted 32 ms of wall time, and then dropped 30% of a 720p feed). The choice is logged as
a warning, since a smaller network input misses more small faces; ``--det-size``
overrides it.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import DetectConfig
from ..detect.centerface import AUTO_LONG_SIDE

log = logging.getLogger(__name__)

BUDGET_SHARE = 0.8  # of the frame interval the detector may use; decode/encode use the other cores
MIN_LONG_SIDE = 640
CANDIDATES = (1920, 1600, 1280, 1120, 960, 800, 640)
TIMED_RUNS = 3  # after one warm-up run per size


@dataclass(frozen=True)
class DetSizeChoice:
    """What live mode chose and why (goes into the live report)."""

    det_size: int | None  # None: native (nothing changed)
    native_long_side: int
    budget_ms: float
    timings_ms: dict[int, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "det_size": self.det_size,
            "native_long_side": self.native_long_side,
            "budget_ms": round(self.budget_ms, 1),
            "timings_ms": {str(k): round(v, 1) for k, v in self.timings_ms.items()},
        }


def candidate_sizes(native_long_side: int, candidates: Sequence[int] = CANDIDATES) -> list[int]:
    """Long sides to try, largest first: native (capped like offline) then smaller ones."""
    top = min(native_long_side, AUTO_LONG_SIDE)
    sizes = [top] + [c for c in candidates if MIN_LONG_SIDE <= c < top]
    return sorted(set(sizes), reverse=True)


def time_detector(detector: Callable[[list[Any]], Any], image: np.ndarray, runs: int = TIMED_RUNS) -> float:
    """Median seconds of ``detector([image])`` after one warm-up call."""
    detector([image])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        detector([image])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def call_threads(detector: Any) -> int:
    """CPU threads one call of ``detector`` runs on (1 when it does not say)."""
    return max(1, int(getattr(getattr(detector, "backend", None), "threads_per_call", 1) or 1))


def fit_det_size(detector: Any, width: int, height: int, fps: float, *, share: float = BUDGET_SHARE) -> DetSizeChoice:
    """Set ``detector.config.det_size`` to the largest size that keeps up with ``fps``.

    Sizes are tried from the largest down and the search stops at the first that fits, so
    a fast machine (or a GPU backend) pays for one timing only and keeps native size.

    Args:
        detector: a detector with a ``config: DetectConfig`` it reads on every call
            (``CenterFaceDetector``); anything else is left as it is.
        width: frame width of the feed.
        height: frame height of the feed.
        fps: the feed's nominal rate.
        share: fraction of the frame interval the detector may take.
    """
    native = max(width, height)
    budget_ms = share / fps * 1000
    config = getattr(detector, "config", None)
    if not isinstance(config, DetectConfig):
        return DetSizeChoice(None, native, budget_ms, {})
    image = np.zeros((height, width, 3), np.uint8)
    sizes = candidate_sizes(native)
    timings: dict[int, float] = {}
    chosen = sizes[-1]
    for size in sizes:
        # the largest candidate is timed as it runs offline: det_size None (native, capped)
        detector.config = config if size == sizes[0] else dataclasses.replace(config, det_size=size)
        timings[size] = time_detector(detector, image) * 1000 * call_threads(detector)
        if timings[size] <= budget_ms:
            chosen = size
            break
    if chosen == sizes[0]:
        detector.config = config
        return DetSizeChoice(None, native, budget_ms, timings)
    detector.config = dataclasses.replace(config, det_size=chosen)
    fits = timings[chosen] <= budget_ms
    log.warning(
        "live: detecting at long side %d, not the native %d: detection at native size costs %.0f core-ms per frame, "
        "over the %.0f ms budget at %g fps%s. Faces under ~%d px tall are missed more often; "
        "--det-size %d detects at native size and drops frames instead.",
        chosen,
        native,
        timings[sizes[0]],
        budget_ms,
        fps,
        "" if fits else f" (even {chosen} costs {timings[chosen]:.0f} core-ms: frames will be dropped)",
        round(16 * native / chosen),
        sizes[0],
    )
    return DetSizeChoice(chosen, native, budget_ms, timings)
