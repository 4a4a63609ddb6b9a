"""Frozen per-stage configuration composed into one ``PipelineConfig``.

Every field is validated in ``__post_init__`` with a message that names the field, the
value and what is allowed. ``PipelineConfig.to_dict``/``from_dict`` round-trip through
JSON (for batch workers, Ray tasks and reproducible eval runs); unknown keys get a
"did you mean" suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

OnError = Literal["mask-frame", "abort"]


def _check(cond: bool, field_name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"invalid {field_name}={value!r}: expected {allowed}")


def _unknown(cls: type, data: dict[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown {cls.__name__} key {key!r}{extra}")


BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class DetectConfig:
    """Face detection settings.

    ``threshold`` 0.2 was chosen from recall and coverage measured on ../shared/data
    (README, "Detection"): at 0.3 real faces near the threshold flicker in and out
    (coverage 90% on the Hamilton clip vs 99.9% at 0.2); false positives only cost
    some masked background.
    """

    model: str = "centerface"
    threshold: float = 0.2
    det_size: int | None = None  # long side of the network input; None = native (max 1920)
    batch: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 0  # CPU threads per detector call; 0 = auto (all cores but one, split over workers)
    workers: int = 0  # concurrent detector calls; 0 = auto (2 for a CPU backend with >= 2 cores)
    # auto: TensorRT, else ONNX Runtime on a GPU, else OpenVINO, else ONNX Runtime (backends/select.py)
    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt"] = "auto"
    engine_dir: str = "engines"
    # auto: fp16 on TensorRT, bf16 on OpenVINO where the CPU has it natively, else fp32
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    def __post_init__(self) -> None:
        _check(self.backend in BACKENDS, "backend", self.backend, ", ".join(f"'{b}'" for b in BACKENDS))
        _check(self.precision in PRECISIONS, "precision", self.precision, ", ".join(f"'{p}'" for p in PRECISIONS))
        _check(0.0 < self.threshold < 1.0, "threshold", self.threshold, "a number in (0, 1)")
        _check(
            self.det_size is None or (isinstance(self.det_size, int) and 32 <= self.det_size <= 4096),
            "det_size",
            self.det_size,
            "an integer in [32, 4096] or None",
        )
        _check(isinstance(self.batch, int) and 1 <= self.batch <= 64, "batch", self.batch, "an integer in [1, 64]")
        _check(isinstance(self.threads, int) and self.threads >= 0, "threads", self.threads, "an integer >= 0")
        _check(isinstance(self.workers, int) and 0 <= self.workers <= 16, "workers", self.workers, "an integer in [0, 16]")
        object.__setattr__(self, "providers", tuple(self.providers))


@dataclass(frozen=True)
class TrackConfig:
    """Tracking settings. Tracking only ever adds coverage (see ``streamanon.track``)."""

    enabled: bool = True
    max_coast: int = 15  # frames a track is kept (and masked) after its last detection
    iou_match: float = 0.2  # minimum IoU for the first (high-score) association pass
    iou_match_low: float = 0.3  # minimum IoU for the ByteTrack-style low-score pass
    low_threshold: float = 0.1  # detections in [low_threshold, threshold) only extend tracks
    coast_growth: float = 0.05  # box growth per coasted frame (uncertainty)
    smoothing: float = 0.5  # 0 = raw boxes, toward 1 = more smoothing of the reported box
    detect_every: int = 1
    scene_cut: float = 0.4  # mean abs difference (0..1) of thumbnails that forces detection

    def __post_init__(self) -> None:
        _check(isinstance(self.max_coast, int) and 0 <= self.max_coast <= 300, "max_coast", self.max_coast, "[0, 300]")
        _check(0.0 < self.iou_match <= 1.0, "iou_match", self.iou_match, "(0, 1]")
        _check(0.0 < self.iou_match_low <= 1.0, "iou_match_low", self.iou_match_low, "(0, 1]")
        _check(0.0 < self.low_threshold < 1.0, "low_threshold", self.low_threshold, "(0, 1)")
        _check(0.0 <= self.coast_growth <= 1.0, "coast_growth", self.coast_growth, "[0, 1]")
        _check(0.0 <= self.smoothing < 1.0, "smoothing", self.smoothing, "[0, 1)")
        _check(
            isinstance(self.detect_every, int) and 1 <= self.detect_every <= 30,
            "detect_every",
            self.detect_every,
            "an integer in [1, 30]",
        )
        _check(0.0 < self.scene_cut <= 1.0, "scene_cut", self.scene_cut, "(0, 1]")


@dataclass(frozen=True)
class AnonymizeConfig:
    """How detected faces are anonymised."""

    method: str = "solid"
    shape: Literal["ellipse", "box"] = "ellipse"
    mask_scale: float = 1.3
    # pixels added around every mask after scaling (small faces: a 12 px box is off by a
    # pixel or two between frames and backends, 1.3x leaves under 2 px of slack)
    mask_margin: float = 2.0
    color: tuple[int, int, int] = (0, 0, 0)  # RGB for ``solid``
    blur_strength: float = 1.0  # multiplies the size-proportional kernel
    pixel_blocks: int = 8  # blocks across a face for ``pixelate``
    feather: float = 0.0  # soft edge as a fraction of the mask size (0 = hard edge)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.shape in ("ellipse", "box"), "shape", self.shape, "'ellipse' or 'box'")
        _check(1.0 <= self.mask_scale <= 4.0, "mask_scale", self.mask_scale, "a number in [1, 4]")
        _check(0.0 <= self.mask_margin <= 64.0, "mask_margin", self.mask_margin, "a number of pixels in [0, 64]")
        color = tuple(int(c) for c in self.color)
        _check(len(color) == 3 and all(0 <= c <= 255 for c in color), "color", self.color, "three values in [0, 255]")
        object.__setattr__(self, "color", color)
        _check(0.1 <= self.blur_strength <= 10, "blur_strength", self.blur_strength, "a number in [0.1, 10]")
        _check(
            isinstance(self.pixel_blocks, int) and 2 <= self.pixel_blocks <= 64,
            "pixel_blocks",
            self.pixel_blocks,
            "an integer in [2, 64]",
        )
        _check(0.0 <= self.feather <= 0.5, "feather", self.feather, "a number in [0, 0.5]")


@dataclass(frozen=True)
class IOConfig:
    """Decoding and encoding settings."""

    codec: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    encoder_options: tuple[tuple[str, str], ...] = ()
    audio: bool = True
    keep_metadata: bool = False
    queue_size: int = 8
    on_error: OnError = "mask-frame"

    def __post_init__(self) -> None:
        _check(isinstance(self.crf, int) and 0 <= self.crf <= 51, "crf", self.crf, "an integer in [0, 51]")
        _check(self.on_error in ("mask-frame", "abort"), "on_error", self.on_error, "'mask-frame' or 'abort'")
        _check(
            isinstance(self.queue_size, int) and 1 <= self.queue_size <= 256,
            "queue_size",
            self.queue_size,
            "an integer in [1, 256]",
        )
        object.__setattr__(self, "encoder_options", tuple((str(k), str(v)) for k, v in self.encoder_options))


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run needs, composed of the per-stage configs."""

    detect: DetectConfig = field(default_factory=DetectConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    anonymize: AnonymizeConfig = field(default_factory=AnonymizeConfig)
    io: IOConfig = field(default_factory=IOConfig)

    _PARTS = {"detect": DetectConfig, "track": TrackConfig, "anonymize": AnonymizeConfig, "io": IOConfig}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def settings_hash(self) -> str:
        """A stable hash of every setting that changes the output (batch manifests)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        _unknown(cls, data)
        parts: dict[str, Any] = {}
        for name, sub in cls._PARTS.items():
            values = dict(data.get(name, {}))
            _unknown(sub, values)
            for f in dataclasses.fields(sub):
                if f.name in values and isinstance(values[f.name], list):
                    values[f.name] = tuple(tuple(v) if isinstance(v, list) else v for v in values[f.name])
            parts[name] = sub(**values)
        return cls(**parts)

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        return cls.from_dict(json.loads(text))
