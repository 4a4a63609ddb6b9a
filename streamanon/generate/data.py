"""Training chips for the generator: found by the product's own detector, aligned by its own
alignment, masked by its own ellipse, cached in a folder the user names.

The generator must learn to fill exactly what the pipeline will ask it to fill, so the chips
come from the same stages: CenterFace boxes and five points, dlib's 68 points on those
boxes, ``anonymize.generator_chip``'s chip, and the product's mask ellipse warped into the chip.
Chips are raw faces: they are written only under ``cache`` (never next to the model), one
``.npz`` per source file, so an interrupted build resumes and new data adds to it. Nothing
here needs torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..anonymize.align import five_from_68
from ..anonymize.generator_chip import SIZES, chip_masks, generator_alignments
from ..config import DetectConfig, PipelineConfig
from ..errors import ConfigError, SourceError, SourceOpenError
from ..io import is_image_path, is_video_path
from ..io.source import VideoSource
from ..models.landmarks import Landmarker68
from ..pipeline import Stages
from ..types import Detections

log = logging.getLogger(__name__)

CACHE_VERSION = 1
PAD_VALUE = 114  # grey border around tight face photos, as ``eval.product`` pads them
PAD_MAX = 256


@dataclass(frozen=True)
class ChipSettings:
    """What decides which chips a source yields (part of each cache file's key)."""

    size: int = 64
    min_score: float = 0.5  # detector confidence of a training face
    max_upscale: float = 2.0  # chip pixels per frame pixel: smaller faces are too blurry to learn from
    video_step: int = 4  # every n-th frame of a video
    max_per_video: int = 150  # chips per video at most (long clips of one person would dominate)
    max_landmark_error: float = 0.35  # dlib's 5 points vs CenterFace's, in eye distances
    mask_scale: float = 1.3  # the product's ellipse (AnonymizeConfig.mask_scale, mask_margin)
    mask_margin: float = 2.0

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"invalid chip size {self.size}: expected one of {', '.join(map(str, SIZES))}")
        if self.video_step < 1 or self.max_per_video < 1:
            raise ConfigError("video_step and max_per_video must be >= 1")

    def key(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, **self.__dict__}


@dataclass
class Source:
    """One input file and the label its faces carry (a person or a clip)."""

    path: Path
    kind: str  # "image" or "video"
    label: str


@dataclass
class ChipSet:
    """Aligned training faces as parallel arrays.

    Attributes:
        chips: ``(N, S, S, 3)`` uint8 RGB.
        masks: ``(N, S, S)`` uint8, 1 where the product replaces pixels.
        landmarks: ``(N, 68, 2)`` float32 chip pixels.
        source: ``(N,)`` int64 index into ``sources``.
        sources: ``[(path, label)]`` of every source with at least one chip.
    """

    chips: NDArray[np.uint8]
    masks: NDArray[np.uint8]
    landmarks: NDArray[np.float32]
    source: NDArray[np.int64]
    sources: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chips)

    @property
    def size(self) -> int:
        return int(self.chips.shape[1])

    @property
    def labels(self) -> list[str]:
        return [self.sources[i][1] for i in self.source]

    def subset(self, idx: NDArray[np.int64]) -> ChipSet:
        return ChipSet(self.chips[idx], self.masks[idx], self.landmarks[idx], self.source[idx], self.sources)

    @classmethod
    def empty(cls, size: int) -> ChipSet:
        return cls(
            np.zeros((0, size, size, 3), np.uint8),
            np.zeros((0, size, size), np.uint8),
            np.zeros((0, 68, 2), np.float32),
            np.zeros(0, np.int64),
        )


def scan_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Every image and video under ``paths`` (files or folders, recursively), sorted.

    A face's label is its file's folder relative to the given root (``<root>/<person>/x.jpg``
    -> ``person``), or the file's stem for files directly in the root and for videos.

    Raises:
        SourceOpenError: a path does not exist or no media is found at all.
    """
    if not paths:
        raise ConfigError("no training data given")
    out: list[Source] = []
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise SourceOpenError(f"training data not found: {root}", source=str(root))
        files = (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        )
        for p in files:
            if is_video_path(p):
                out.append(Source(p, "video", p.stem))
            elif is_image_path(p):
                rel = p.parent.relative_to(root) if p.parent != root and root.is_dir() else None
                out.append(Source(p, "image", str(rel) if rel is not None and str(rel) != "." else p.stem))
    if not out:
        raise SourceOpenError(f"no images or videos in {', '.join(map(str, paths))}", source=str(paths[0]))
    return out


class ChipBuilder:
    """Finds, aligns and masks the faces of frames with the product's own stages.

    Args:
        settings: chip size and filters.
        detector: ``images -> [Detections]`` (default: the product's detector, one thread).
        landmarker: ``(image, boxes) -> (N, 68, 2)`` (default: ``Landmarker68``).
    """

    def __init__(
        self,
        settings: ChipSettings,
        detector: Callable[[list[NDArray[np.uint8]]], list[Detections]] | None = None,
        landmarker: Callable[[NDArray[np.uint8], NDArray[np.float32]], NDArray[np.float32]] | None = None,
    ) -> None:
        self.settings = settings
        if detector is None:
            # one thread, one worker: building chips shares the machine with training
            detector = Stages(PipelineConfig(detect=DetectConfig(threads=1, workers=1))).detector
        if landmarker is None:
            landmarker = Landmarker68()
        self.detector = detector
        self.landmarker = landmarker

    def faces(self, image: NDArray[np.uint8], pad: bool = False) -> ChipSet:
        """Chips of the faces in one RGB frame that pass the filters.

        ``pad`` adds a grey border before detection (tight face photos: the detector is
        not trained on faces that fill the frame); chips are cut from the unpadded image.
        """
        s = self.settings
        h, w = image.shape[:2]
        p = min(PAD_MAX, round(0.5 * max(h, w))) if pad else 0
        det_in = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3) if p else image
        dets = self.detector([np.ascontiguousarray(det_in)])[0]
        keep = (dets.score >= s.min_score) & dets.has_landmarks
        dets = dets[np.flatnonzero(keep)]
        if p and len(dets):
            dets = Detections(dets.xyxy - p, dets.score, dets.landmarks - p, dets.track_id, dets.source)
        if not len(dets):
            return ChipSet.empty(s.size)
        lm68 = self.landmarker(np.ascontiguousarray(image), dets.xyxy)
        good = []
        for i in range(len(dets)):
            if np.isnan(lm68[i]).any():
                continue
            five = five_from_68(lm68[i])
            eye = float(np.linalg.norm(dets.landmarks[i, 1] - dets.landmarks[i, 0]))
            err = float(np.linalg.norm(five - dets.landmarks[i], axis=1).mean())
            if eye < 1 or err > s.max_landmark_error * eye:
                continue  # dlib and CenterFace disagree: a profile, an occlusion or a false face
            good.append(i)
        if not good:
            return ChipSet.empty(s.size)
        dets = dets[np.array(good)]
        lm68 = lm68[np.array(good)]
        als = generator_alignments(dets, s.size, lm68)
        rows = [i for i, a in enumerate(als) if a.scale <= s.max_upscale]
        if not rows:
            return ChipSet.empty(s.size)
        dets, als = dets[np.array(rows)], [als[i] for i in rows]
        masks = chip_masks(dets, als, w, h, s.mask_scale, s.mask_margin)
        chips = np.stack(
            [
                cv2.warpAffine(
                    image,
                    a.matrix,
                    (s.size, s.size),
                    flags=cv2.INTER_LINEAR,  # as warp_chip: the pipeline's chips are cut the same way
                    borderMode=cv2.BORDER_REPLICATE,
                )
                for a in als
            ]
        ).astype(np.uint8, copy=False)
        lms = np.stack([a.landmarks68 for a in als if a.landmarks68 is not None]).astype(np.float32)
        return ChipSet(chips, masks, lms, np.zeros(len(als), np.int64))

    def frames(self, src: Source) -> Iterator[NDArray[np.uint8]]:
        """The frames of a source that are looked at (every ``video_step``-th of a video)."""
        if src.kind == "image":
            from ..io.image import read_image

            yield read_image(src.path).image
            return
        with VideoSource(src.path, audio=False) as video:
            for i, frame in enumerate(video):
                if i % self.settings.video_step == 0:
                    yield frame.image

    def source_chips(self, src: Source) -> ChipSet:
        """Every chip of one source (at most ``max_per_video`` for a video)."""
        parts: list[ChipSet] = []
        n = 0
        for image in self.frames(src):
            cs = self.faces(image, pad=src.kind == "image")
            if len(cs):
                parts.append(cs)
                n += len(cs)
            if src.kind == "video" and n >= self.settings.max_per_video:
                break
        out = concat(parts, self.settings.size)
        return out.subset(np.arange(min(len(out), self.settings.max_per_video))) if src.kind == "video" else out


def cap_per_label(cs: ChipSet, n: int) -> ChipSet:
    """At most ``n`` chips per label, evenly spaced in order (long frame sequences of one
    person would otherwise dominate training and invite memorising that person)."""
    labels = np.array([lab for _, lab in cs.sources])[cs.source] if len(cs) else np.zeros(0, str)
    keep: list[int] = []
    for lab in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == lab)
        if len(rows) > n:
            rows = rows[np.linspace(0, len(rows) - 1, n).round().astype(np.int64)]
        keep.extend(rows.tolist())
    return cs.subset(np.array(sorted(keep), np.int64))


def concat(parts: Sequence[ChipSet], size: int) -> ChipSet:
    if not parts:
        return ChipSet.empty(size)
    return ChipSet(
        np.concatenate([p.chips for p in parts]),
        np.concatenate([p.masks for p in parts]),
        np.concatenate([p.landmarks for p in parts]),
        np.concatenate([p.source for p in parts]),
    )


def _cache_name(src: Source, settings: ChipSettings) -> str:
    st = src.path.stat()
    key = json.dumps([str(src.path.resolve()), st.st_size, int(st.st_mtime), settings.key()], sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz"


def _write_npz(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def build_cache(
    sources: Sequence[Source],
    cache: Path,
    settings: ChipSettings,
    builder: ChipBuilder | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ChipSet:
    """Chips of every source, from ``cache`` where a source was done before, else built.

    Sources that cannot be read are skipped with a warning (a training set of many files
    should not fail on one). ``progress(i, n, name)`` is called before each source.

    Raises:
        SourceError: no source yielded a single chip.
    """
    folder = Path(cache) / f"chips-{settings.size}"
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[ChipSet] = []
    names: list[tuple[str, str]] = []
    for i, src in enumerate(sources):
        if progress is not None:
            progress(i, len(sources), src.path.name)
        f = folder / _cache_name(src, settings)
        cs: ChipSet | None = None
        if f.is_file():
            try:
                with np.load(f) as z:
                    cs = ChipSet(z["chips"], z["masks"], z["landmarks"], np.zeros(len(z["chips"]), np.int64))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cache file %s unreadable (%s): rebuilding it", f, exc)
                f.unlink(missing_ok=True)
        if cs is None:
            if builder is None:
                builder = ChipBuilder(settings)
            try:
                cs = builder.source_chips(src)
            except SourceError as exc:
                log.warning("skipping %s: %s", src.path, exc)
                continue
            _write_npz(f, chips=cs.chips, masks=cs.masks, landmarks=cs.landmarks)
        if len(cs):
            cs.source[:] = len(names)
            names.append((str(src.path), src.label))
            parts.append(cs)
    out = concat(parts, settings.size)
    out.sources = names
    if not len(out):
        raise SourceError(
            f"no usable faces found in {len(sources)} training files", source=str(sources[0].path) if sources else None
        )
    index = {"settings": settings.key(), "sources": [{"path": p, "label": lab} for p, lab in names], "chips": len(out)}
    (folder / "index.json").write_text(json.dumps(index, indent=1))
    return out
