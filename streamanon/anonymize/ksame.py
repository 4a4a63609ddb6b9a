"""``k-same``: every face replaced by the average of k aligned faces (Newton, Sweeney &
Malin, "Preserving privacy by de-identifying face images", 2005; pixel-space k-Same on
aligned chips, the k-Same-M idea of aligning before averaging).

k-Same is defined over a set of faces, the *pool*: the faces being processed (the tracks
of a video, the images of a folder, ``streamanon eval``'s face set), plus the faces of a
``--face-bank`` folder the user provides. The pool is split into clusters of at least k
faces (repeatedly: the face farthest from the pool's mean and its k-1 nearest faces; the
last < k faces join their nearest clusters), and every member of a cluster is replaced by
the same surrogate, the cluster's average. Each surrogate is therefore shared by >= k
pool faces, and a recogniser that matches a surrogate against the pool's originals picks
the right one with probability at most 1/k: that is the guarantee, and it holds for the
pool only (faces outside the pool, or two tracks of one person counted as two faces,
are outside its statement). Each track keeps one surrogate for its whole life.

With fewer than k faces in the pool there is no k-anonymous surrogate: the faces are
masked with ``solid`` instead, and the run report says so. Live feeds have no second pass:
their pool is the face bank alone (each track gets the surrogate of the bank cluster
nearest to it, so none of the person's pixels reach the output).

Raw faces are held in memory only (one running mean per track), never written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..errors import ConfigError
from ..models.landmarks import Landmarker68
from ..models.recognizer import shared_recogniser
from ..types import Detections
from .align import Alignment, align_faces, warp_chip
from .base import FrameInfo, TrackStates
from .chips import CHIP_SIZE, ChipAnonymizer
from .facebank import face_bank_folder
from .methods import SolidAnonymizer

log = logging.getLogger(__name__)

FALLBACK = "solid"
_DESC = 32  # side of the grey thumbnail faces are compared by


def _descriptor(chip: NDArray[Any]) -> NDArray[np.float32]:
    """Zero-mean, unit-norm grey thumbnail: pixel-space distance insensitive to exposure."""
    grey = cv2.cvtColor(np.clip(chip, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    v = cv2.resize(grey, (_DESC, _DESC), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    out: NDArray[np.float32] = v / n if n > 0 else v
    return out


def k_same_clusters(desc: NDArray[np.float32], k: int) -> list[list[int]]:
    """Partition rows of ``desc`` into clusters of >= k (empty when fewer than k rows)."""
    n = len(desc)
    if n < k:
        return []
    remaining = list(range(n))
    clusters: list[list[int]] = []
    centre = desc.mean(0)
    while len(remaining) >= k:
        sub = desc[remaining]
        far = remaining[int(np.argmax(((sub - centre) ** 2).sum(1)))]
        d = ((sub - desc[far]) ** 2).sum(1)
        members = [remaining[j] for j in np.argsort(d, kind="stable")[:k]]
        clusters.append(members)
        taken = set(members)
        remaining = [r for r in remaining if r not in taken]
    if remaining:
        means = np.stack([desc[c].mean(0) for c in clusters])
        for r in remaining:
            clusters[int(np.argmin(((means - desc[r]) ** 2).sum(1)))].append(r)
    return clusters


#: Two pool faces closer than this under dlib's recogniser are taken as one person (dlib's
#: documented same-person distance).
SAME_PERSON = 0.6


def group_persons(embeddings: NDArray[np.float32], threshold: float = SAME_PERSON) -> list[list[int]]:
    """Greedy grouping of faces into persons: a face joins the first group whose mean
    embedding is within ``threshold``, else starts one (order-stable)."""
    groups: list[list[int]] = []
    means: list[NDArray[np.float64]] = []
    for i, e in enumerate(np.asarray(embeddings, np.float64)):
        d = [float(np.linalg.norm(m - e)) for m in means]
        j = int(np.argmin(d)) if d else -1
        if j >= 0 and d[j] < threshold:
            groups[j].append(i)
            means[j] = np.mean(embeddings[groups[j]], axis=0)
        else:
            groups.append([i])
            means.append(e)
    return groups


@dataclass
class FacePool:
    """The set k-Same is defined over: aligned ``CHIP_SIZE`` chips (float32, in memory).

    k-Same's 1/k counts distinct people, and a set often holds several faces of one person
    (a photo folder, a track broken in two, a face bank with many photos each): averaging k
    faces of one person just reproduces that person. When every face carries a recogniser
    embedding, faces are first grouped into persons (``group_persons``) and the clusters are
    made of k *persons*; every face of a person gets its cluster's surrogate, the average of
    the k persons' mean faces. Without embeddings (no dlib installed) each face counts as
    its own person, and the report says so.
    """

    k: int
    chips: list[NDArray[np.float32]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    embeddings: list[NDArray[np.float32] | None] = field(default_factory=list)
    cluster_sizes: list[int] = field(default_factory=list)
    persons: int = 0
    _surrogates: NDArray[np.float32] | None = None  # per entry, the cluster average
    _groups: list[list[int]] | None = None
    _desc: NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.chips)

    def add(self, chip: NDArray[Any], label: str, embedding: NDArray[Any] | None = None) -> None:
        self.chips.append(np.asarray(chip, np.float32))
        self.labels.append(label)
        self.embeddings.append(None if embedding is None else np.asarray(embedding, np.float32))
        self._surrogates = self._groups = None

    @property
    def by_person(self) -> bool:
        """Whether faces are grouped into persons (every face has an embedding)."""
        return bool(self.embeddings) and all(e is not None for e in self.embeddings)

    def groups(self) -> list[list[int]]:
        """The pool's faces grouped into persons (computed once per pool content)."""
        if self._groups is None:
            if self.by_person:
                self._groups = group_persons(np.stack([e for e in self.embeddings if e is not None]))
            else:
                self._groups = [[i] for i in range(len(self))]
        return self._groups

    @property
    def ready(self) -> bool:
        """Whether the pool holds at least k persons (else there is no k-anonymous surrogate)."""
        if len(self) < self.k:
            return False
        return len(self.groups()) >= self.k

    def _build(self) -> None:
        desc = np.stack([_descriptor(c) for c in self.chips])
        groups = self.groups()
        self.persons = len(groups)
        person_chip = [np.mean([self.chips[m] for m in g], axis=0) for g in groups]
        person_desc = np.stack([desc[g].mean(0) for g in groups])
        sur = np.zeros((len(self), *self.chips[0].shape), np.float32)
        self.cluster_sizes = []
        for members in k_same_clusters(person_desc, self.k):
            avg = np.mean([person_chip[m] for m in members], axis=0)
            for m in members:
                sur[groups[m]] = avg
            self.cluster_sizes.append(len(members))
        self._surrogates, self._desc = sur, desc

    def surrogate_for(self, chip: NDArray[Any]) -> tuple[NDArray[np.float32], int]:
        """The surrogate of the pool entry nearest to ``chip`` and that entry's index."""
        if not self.ready:
            raise ConfigError(f"the k-same pool has {len(self.groups())} persons, fewer than k={self.k}")
        if self._surrogates is None:
            self._build()
        assert self._surrogates is not None and self._desc is not None
        j = int(np.argmin(((self._desc - _descriptor(chip)) ** 2).sum(1)))
        return self._surrogates[j], j


class FaceEmbedder(Protocol):
    """Recogniser embeddings of faces given by boxes (dlib's ResNet via ``DlibRecogniser``)."""

    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]: ...


class DlibFaceEmbedder:
    """dlib's 5-point landmarks fitted in each box, then its ResNet embedding (~70 ms a face)."""

    def __init__(self) -> None:
        self._rec = shared_recogniser()

    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
        img = np.ascontiguousarray(image)
        return self._rec.embed(img, [self._rec.locate(img, b) for b in boxes])


#: Detector frames of a track whose faces are embedded (the person's identity for grouping).
EMBED_FRAMES = 3


@dataclass
class _TrackFaces:
    landmarked: NDArray[np.float64] | None = None
    n_landmarked: int = 0
    boxed: NDArray[np.float64] | None = None
    n_boxed: int = 0
    embedding: NDArray[np.float64] | None = None
    n_embedded: int = 0


class KSameCollector(ChipAnonymizer):
    """First pass: one mean aligned chip per track goes into ``pool`` when the track ends.

    Its ``apply`` returns the frame unchanged: the first pass writes nothing.
    """

    name = "k-same-collect"

    def __init__(
        self,
        config: AnonymizeConfig,
        pool: FacePool,
        label: str = "",
        landmarker: Landmarker68 | None = None,
        embedder: FaceEmbedder | None = None,
    ) -> None:
        super().__init__(config, landmarker)
        self.pool = pool
        self.label = label
        self.embedder = embedder
        self._tracks: TrackStates[_TrackFaces] = TrackStates(self._record)
        self._untracked = 0

    @staticmethod
    def _record(t: _TrackFaces) -> dict[str, Any]:
        return {"landmarked_frames": t.n_landmarked, "box_frames": t.n_boxed}

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.start(track_id, _TrackFaces())

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        t = self._tracks.end(track_id)
        if t is None:
            return
        # Chips aligned on landmarks are what the pool compares and averages; a track that
        # only ever coasted contributes its box chips.
        emb = None if t.embedding is None else t.embedding / t.n_embedded
        if t.landmarked is not None:
            self.pool.add(t.landmarked / t.n_landmarked, f"{self.label}track{track_id}", emb)
        elif t.boxed is not None:
            self.pool.add(t.boxed / t.n_boxed, f"{self.label}track{track_id}", emb)

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        if not len(dets):
            return image
        for i, a in enumerate(align_faces(dets, self.chip_size, self.landmarks68(image, dets))):
            chip = warp_chip(image, a).astype(np.float64)
            tid = int(dets.track_id[i])
            if tid < 0:  # untracked: every row is a face of its own
                self._untracked += 1
                emb = self.embedder(image, dets.xyxy[i : i + 1])[0] if self.embedder is not None else None
                self.pool.add(chip, f"{self.label}row{self._untracked}", emb)
                continue
            t = self._tracks.get(tid)
            if t is None:  # driven without track_started (a caller's own loop)
                t = _TrackFaces()
                self._tracks.start(tid, t)
            if self.embedder is not None and not a.box_only and t.n_embedded < EMBED_FRAMES:
                e = self.embedder(image, dets.xyxy[i : i + 1])[0].astype(np.float64)
                t.embedding = e if t.embedding is None else t.embedding + e
                t.n_embedded += 1
            if a.box_only:
                t.boxed = chip if t.boxed is None else t.boxed + chip
                t.n_boxed += 1
            else:
                t.landmarked = chip if t.landmarked is None else t.landmarked + chip
                t.n_landmarked += 1
        return image


@dataclass
class _TrackSurrogate:
    surrogate: NDArray[np.float32]  # the cluster average, fixed for the track's life
    entry: int  # the pool entry it was matched to
    frames: int = 0


class KSameAnonymizer(ChipAnonymizer):
    """Second pass: each track gets the surrogate of its cluster, fixed for its life."""

    name = "k-same"

    def __init__(self, config: AnonymizeConfig, pool: FacePool, landmarker: Landmarker68 | None = None) -> None:
        super().__init__(config, landmarker)
        self.pool = pool
        self.k = config.k
        self._fallback = None if pool.ready else SolidAnonymizer(config)
        if self._fallback is not None:
            log.warning(
                "k-same: the pool has %d %s, fewer than k=%d: faces are masked with %s instead "
                "(add faces of other people with --face-bank DIR)",
                len(pool.groups()),
                "persons" if pool.by_person else "faces",
                self.k,
                FALLBACK,
            )
        self._tracks: TrackStates[_TrackSurrogate] = TrackStates(self._record)
        self._fallback_faces = 0

    def _record(self, t: _TrackSurrogate) -> dict[str, Any]:
        return {"frames": t.frames, "pool_entry": self.pool.labels[t.entry]}

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.end(track_id)

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        if self._fallback is not None:
            self._fallback_faces += len(dets)
            return self._fallback.apply(image, dets, info)
        return super().apply(image, dets, info)

    def process(
        self, chips: NDArray[np.uint8], alignments: Sequence[Alignment], dets: Detections, info: FrameInfo | None
    ) -> NDArray[np.uint8]:
        out = np.empty_like(chips)
        for j in range(len(chips)):
            tid = int(dets.track_id[j])
            t = self._tracks.get(tid)
            if t is None:
                surrogate, entry = self.pool.surrogate_for(chips[j])
                t = _TrackSurrogate(surrogate, entry)
                if tid >= 0:  # an untracked row (id < 0) is served alone, never recorded
                    self._tracks.start(tid, t)
            t.frames += 1
            out[j] = np.clip(np.round(t.surrogate), 0, 255).astype(np.uint8)
        return out

    def report(self) -> dict[str, Any]:
        sizes = self.pool.cluster_sizes
        unit = "persons" if self.pool.by_person else "faces"
        return {
            "guarantee": (
                f"each surrogate is the average of a cluster of >= k={self.k} {unit} of the pool "
                f"({len(self.pool)} faces, {self.pool.persons or len(self.pool)} {unit}): "
                "matching a surrogate to the pool's originals succeeds with probability <= 1/k, for the pool only"
            ),
            "k": self.k,
            "pool_faces": len(self.pool),
            "pool_persons": self.pool.persons if self.pool.by_person else None,
            "grouped_by": (
                "dlib recogniser, distance < 0.6" if self.pool.by_person else "none (each face counts as a person)"
            ),
            "clusters": len(sizes),
            "cluster_sizes": sizes,
            "fallback": None
            if self._fallback is None
            else {
                "method": FALLBACK,
                "faces": self._fallback_faces,
                "why": f"pool of {len(self.pool.groups())} {unit} < k={self.k}",
            },
            "per_track": self._tracks.records(),
        }


def load_face_bank(
    folder: str | Path,
    detect: Callable[[NDArray[np.uint8]], Detections],
    size: int = CHIP_SIZE,
    embedder: FaceEmbedder | None = None,
) -> list[tuple[NDArray[np.float32], str, NDArray[np.float32] | None]]:
    """Aligned chips of the largest face of every image of a ``--face-bank`` folder
    (``facebank.face_bank_folder``: its layout and error behaviour).

    ``detect`` is the product's detector on one RGB image. Images without a face are
    skipped (logged). Raises ConfigError when the folder does not exist or holds no face.
    """
    bank = face_bank_folder(folder)
    out: list[tuple[NDArray[np.float32], str, NDArray[np.float32] | None]] = []
    for _, path, padded, face in bank.largest_faces(detect):
        a = align_faces(face, size)[0]
        emb = embedder(padded, face.xyxy)[0] if embedder is not None else None
        out.append((warp_chip(padded, a).astype(np.float32), f"bank:{path.relative_to(bank.root)}", emb))
    if not out:
        raise bank.no_face_error()
    log.info("face bank: %d faces from %d images in %s", len(out), bank.files, bank.root)
    return out
