"""The anonymiser contract and its lifecycle.

An anonymiser is built fresh for every run (a file, a live stream, a batch task) by an
``AnonymizerFactory`` (``factory.py``), which holds what is expensive and stateless (loaded
models, a face bank) and is shared across runs. Within a run an ``AnonymizerSession`` drives it: for every frame it
works out which tracks started and which ended from the track ids of the frame's rows and
tells the anonymiser (``track_started`` / ``track_ended``) before ``apply``. Per-track state
(a DP noise draw, a k-Same surrogate, a latent code, a perturbation) therefore lives exactly
as long as its track, and nothing of one file reaches the next.

A track ends when its id is absent from a frame: the tracker keeps (and reports) a lost
face for ``max_coast`` frames, so a track is absent only once the tracker dropped it.
Rows without a track (``--no-track``) are stateless: each is served on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..types import Detections

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True)
class FrameInfo:
    """What an anonymiser knows of the frame it is applied to."""

    index: int
    time: float | None = None  # presentation time in seconds, None for stills/unknown


@runtime_checkable
class Anonymizer(Protocol):
    """``apply(image, dets, info)`` returns a new image with every face in ``dets`` anonymised.

    ``apply`` never modifies ``image``. Faces of one frame arrive together, so a method can
    process them as one batch. The lifecycle ``AnonymizerSession`` drives: ``track_started``
    before a track's first row, ``track_ended`` after its last (per-track state lives in
    between), ``report`` once at the end of the run. ``FaceAnonymizer`` gives no-op hooks; an
    object with ``apply(image, dets)`` alone (a caller's) is driven without them.
    """

    name: str

    def track_started(self, track_id: int, info: FrameInfo) -> None: ...

    def track_ended(self, track_id: int, info: FrameInfo) -> None: ...

    def report(self) -> dict[str, Any]: ...

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]: ...


class FaceAnonymizer:
    """Base of every product anonymiser: no-op track hooks and an empty report."""

    name = "base"

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        """A track id was seen for the first time in this run."""

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        """A track id is gone (the tracker dropped it, or the run ended): free its state."""

    def report(self) -> dict[str, Any]:
        """JSON-ready facts for the run report (parameters, per-track records); no pixels."""
        return {}

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        raise NotImplementedError


class TrackStates(Generic[S]):
    """An anonymiser's per-track state for one run, and a record of every track that ended.

    ``start`` in ``track_started`` (or when a track's state is first needed); ``get`` when
    serving a row (None for an untracked row, id < 0, or an id that was never started);
    ``end`` in ``track_ended`` pops the state and keeps ``{"track_id": id, **record(state)}``
    (the first ``limit`` only, when given; ``ended`` counts them all); ``records()`` is the
    report's ``per_track``, sorted by track id (``live=True``: then the live tracks', also
    sorted, up to ``limit`` in all).
    """

    def __init__(self, record: Callable[[S], dict[str, Any]], limit: int | None = None) -> None:
        self._record = record
        self._limit = limit
        self._live: dict[int, S] = {}
        self._done: list[dict[str, Any]] = []
        self.ended = 0

    def __len__(self) -> int:
        """Tracks alive now."""
        return len(self._live)

    def start(self, track_id: int, state: S) -> S:
        self._live[track_id] = state
        return state

    def get(self, track_id: int) -> S | None:
        return self._live.get(track_id) if track_id >= 0 else None

    def end(self, track_id: int) -> S | None:
        """Pop the state of ``track_id`` and record it; None (nothing recorded) if unknown."""
        state = self._live.pop(track_id, None)
        if state is not None:
            self.ended += 1
            if self._limit is None or len(self._done) < self._limit:
                self._done.append({"track_id": track_id, **self._record(state)})
        return state

    def records(self, live: bool = False) -> list[dict[str, Any]]:
        out = sorted(self._done, key=lambda r: int(r["track_id"]))
        if live:
            out += [{"track_id": i, **self._record(s)} for i, s in sorted(self._live.items())]
        return out if self._limit is None else out[: self._limit]


class AnonymizerSession:
    """One run of one anonymiser: derives track starts and ends from the rows' track ids.

    Call it for every frame in order; ``close()`` ends the tracks still alive and returns
    the anonymiser's report. Anonymisers without hooks (a plain ``apply`` object given by
    a caller) are driven the same way, minus the hooks.
    """

    def __init__(self, anonymizer: Any) -> None:
        self.anonymizer = anonymizer
        self._alive: set[int] = set()
        self._last = FrameInfo(-1)
        self._hooks = isinstance(anonymizer, Anonymizer)
        self.tracks_seen = 0

    def __call__(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo) -> NDArray[np.uint8]:
        ids = {int(t) for t in dets.track_id if t >= 0}
        if self._hooks:
            for tid in sorted(self._alive - ids):
                self.anonymizer.track_ended(tid, info)
            for tid in sorted(ids - self._alive):
                self.anonymizer.track_started(tid, info)
        self.tracks_seen += len(ids - self._alive)
        self._alive = ids
        self._last = info
        out: NDArray[np.uint8] = (
            self.anonymizer.apply(image, dets, info) if self._hooks else self.anonymizer.apply(image, dets)
        )
        return out

    def skip(self, info: FrameInfo) -> None:
        """A frame that was not anonymised (it failed and was fully masked): every track
        ends here, as the tracker starts over after a failure."""
        if self._hooks:
            for tid in sorted(self._alive):
                self.anonymizer.track_ended(tid, info)
        self._alive = set()

    def close(self) -> dict[str, Any]:
        """End the tracks still alive; the anonymiser's report."""
        if self._hooks:
            for tid in sorted(self._alive):
                self.anonymizer.track_ended(tid, self._last)
        self._alive = set()
        rep: dict[str, Any] = self.anonymizer.report() if self._hooks else {}
        return {"method": getattr(self.anonymizer, "name", "given"), "tracks": self.tracks_seen, **rep}
