"""Fakes and helpers shared by the pipeline tests (imported as ``pipeutil``)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from streamanon.types import Detections, Frame

REPO = Path(__file__).resolve().parents[2]
BOX = (96.0, 64.0, 176.0, 160.0)  # the fake face, xyxy on a 320x240 frame


def streamanon_threads() -> list[str]:
    """Names of live pipeline threads."""
    return [t.name for t in threading.enumerate() if t.name.startswith("streamanon-")]


def noise_pattern(width: int = 320, height: int = 240) -> Callable[[int], np.ndarray]:
    """Frames of mid-grey noise (values 60..200): nothing in them is close to black."""

    def pattern(i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        return rng.integers(60, 200, (height, width, 3), dtype=np.uint8)

    return pattern


class Indexer:
    """Wraps a frame iterable and remembers which image object is which frame.

    Fake stages only see images; this lets them act on known frame indices without
    encoding the index into pixels.
    """

    def __init__(self, frames: Iterable[Frame], fail_at: int | None = None) -> None:
        self._frames = frames
        self.fail_at = fail_at
        self.index: dict[int, int] = {}

    def __iter__(self) -> Iterator[Frame]:
        for f in self._frames:
            if f.index == self.fail_at:
                raise RuntimeError(f"source exploded at frame {f.index}")
            self.index[id(f.image)] = f.index
            yield f

    def of(self, image: np.ndarray) -> int:
        return self.index[id(image)]


class FakeDetector:
    """Finds ``BOX`` on every image; raises on the frames in ``fail_on`` (``"all"``: on every frame)."""

    def __init__(self, indexer: Indexer | None = None, fail_on: Sequence[int] | str = (), delay: float = 0.0) -> None:
        self.indexer = indexer
        self.fail_on = fail_on
        self.delay = delay
        self.seen: list[int] = []
        self.calls = 0

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        out = []
        for im in images:
            idx = self.indexer.of(im) if self.indexer is not None else -1
            if self.fail_on == "all" or idx in self.fail_on:
                raise RuntimeError(f"detector exploded on frame {idx}")
            self.seen.append(idx)
            out.append(Detections(np.array([BOX], np.float32), np.array([0.95], np.float32)))
        return out


class FlakyTracker:
    """Wraps a real tracker and raises on the frames in ``fail_on``."""

    def __init__(self, inner: Any, fail_on: Sequence[int]) -> None:
        self.inner = inner
        self.fail_on = fail_on

    def update(self, dets: Detections | None, frame_index: int, time: float | None = None) -> Detections:
        if frame_index in self.fail_on:
            raise RuntimeError(f"tracker exploded on frame {frame_index}")
        out: Detections = self.inner.update(dets, frame_index)
        return out

    def reset(self) -> None:
        self.inner.reset()


class FlakyAnonymizer:
    """Wraps a real anonymiser and raises on the frames in ``fail_on``."""

    name = "flaky"

    def __init__(self, inner: Any, indexer: Indexer, fail_on: Sequence[int]) -> None:
        self.inner = inner
        self.indexer = indexer
        self.fail_on = fail_on

    def apply(self, image: np.ndarray, dets: Detections) -> np.ndarray:
        if self.indexer.of(image) in self.fail_on:
            raise ValueError("anonymiser exploded")
        out: np.ndarray = self.inner.apply(image, dets)
        return out


def load_bench_common() -> ModuleType:
    """``benchmarks/common.py`` (coverage reference and metric), imported by path."""
    return _load("streamanon_bench_common", REPO / "benchmarks" / "common.py")


def make_clip(path: Path, **kw: Any) -> Path:
    """``tests/conftest.py``'s ``make_clip`` (for module-scoped fixtures)."""
    fn: Callable[..., Path] = _load("streamanon_tests_conftest", REPO / "tests" / "conftest.py").make_clip
    return fn(path, **kw)


def _load(name: str, path: Path) -> ModuleType:
    """Import a file by path once (``conftest``/``benchmarks`` are not packages)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
