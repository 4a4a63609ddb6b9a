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
from typing import Any, ClassVar, Literal

import av
import av.error

from .errors import ConfigError
from .geometry import check_region

# Device types ``--hwaccel`` accepts (FFmpeg's names); which ones work depends on the build and the machine.
DECODE_DEVICES = ("cuda", "qsv", "vaapi", "vdpau", "drm", "vulkan", "d3d11va", "dxva2", "videotoolbox", "amf")

OnError = Literal["mask-frame", "abort"]


def _check(cond: bool, field_name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"invalid {field_name}={value!r}: expected {allowed}")


def _unknown(cls: type, data: dict[str, Any]) -> None:
    """ConfigError naming every key of ``data`` that is not a field of ``cls``, at once."""
    names = [f.name for f in dataclasses.fields(cls)]
    bad = [key for key in data if key not in names]
    if bad:
        hints = [difflib.get_close_matches(key, names, n=1) for key in bad]
        listed = ", ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(bad, hints, strict=True)
        )
        extra = "" if all(hints) else f"; valid keys: {', '.join(names)}"
        raise ConfigError(f"unknown {cls.__name__} key{'s' * (len(bad) > 1)} {listed}{extra}")


BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
SMALL_FACES = ("auto", "on", "off")
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
    # Upscaled tiles for faces under ~32 px (detect/tiles.py). auto: on for frames of 1080p
    # and up, or when one of the first frames shows a face under 32 px (files; not live).
    # Default off: tiles cost 3-9x the speed (README, "Small faces"); auto is for drone/CCTV.
    small_faces: Literal["auto", "on", "off"] = "off"
    tile_scale: float = 2.0  # tile upscaling: an 8 px face reaches the network as 16 px
    tile_every: int = 8  # each tile visited at least every N detector frames (tracker in between)
    max_face_size: float | None = None  # drop boxes larger than this (px, sqrt of the area)

    def __post_init__(self) -> None:
        _check(
            self.small_faces in SMALL_FACES, "small_faces", self.small_faces, ", ".join(f"'{m}'" for m in SMALL_FACES)
        )
        _check(1.0 <= self.tile_scale <= 4.0, "tile_scale", self.tile_scale, "a number in [1, 4]")
        _check(
            isinstance(self.tile_every, int) and 1 <= self.tile_every <= 64,
            "tile_every",
            self.tile_every,
            "an integer in [1, 64]",
        )
        _check(
            self.max_face_size is None or (isinstance(self.max_face_size, (int, float)) and self.max_face_size >= 8),
            "max_face_size",
            self.max_face_size,
            "a size in pixels >= 8, or None",
        )
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
        _check(
            isinstance(self.workers, int) and 0 <= self.workers <= 16, "workers", self.workers, "an integer in [0, 16]"
        )
        object.__setattr__(self, "providers", tuple(self.providers))


@dataclass(frozen=True)
class EngineConfig:
    """Which runtime, precision and device run a model (``backends/select.py``).

    Defaults are the detector's: ``auto`` picks TensorRT, else ONNX Runtime on a GPU,
    else OpenVINO, else ONNX Runtime on the CPU.
    """

    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # ONNX Runtime's, in priority order, or ("auto",)
    threads: int = 0  # CPU threads per call; 0 = the runtime's default
    engine_dir: str = "engines"  # TensorRT engines built by build_engines.py

    def __post_init__(self) -> None:
        _check(self.backend in BACKENDS, "backend", self.backend, ", ".join(f"'{b}'" for b in BACKENDS))
        _check(self.precision in PRECISIONS, "precision", self.precision, ", ".join(f"'{p}'" for p in PRECISIONS))
        _check(isinstance(self.threads, int) and self.threads >= 0, "threads", self.threads, "an integer >= 0")
        object.__setattr__(self, "providers", tuple(self.providers))
        _check(bool(self.providers), "providers", self.providers, "at least one provider or 'auto'")

    @classmethod
    def from_detect(cls, config: DetectConfig) -> EngineConfig:
        """The engine settings inside a ``DetectConfig`` (validated there already)."""
        return cls(config.backend, config.precision, config.providers, config.threads, config.engine_dir)


@dataclass(frozen=True)
class TrackConfig:
    """Tracking settings. Tracking only ever adds coverage (see ``streamanon.track``)."""

    enabled: bool = True
    max_coast: int = 15  # frames a track is kept (and masked) after its last detection
    iou_match: float = 0.2  # minimum IoU for the first (high-score) association pass
    iou_match_low: float = 0.3  # minimum IoU for the ByteTrack-style low-score pass
    low_threshold: float = 0.1  # detections in [low_threshold, threshold) only extend tracks
    coast_growth: float = 0.05  # box growth per 1/30 s coasted (uncertainty), capped at 1.5x (track/tracker.py)
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


#: What ``AnonymizeConfig.keep`` may name (``--keep``).
KEEP_ATTRIBUTES = ("gender", "age")


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
    seed: int | None = None  # per-run secret for randomised methods; None = fresh from the OS each run
    # dp-pixelate / svd privacy parameter, adversarial L-inf bound in /255 code values;
    # None = the method's default (anonymize/dp.py, svd.py, adversarial.py)
    epsilon: float | None = None
    dp_cells: int = 8  # dp-pixelate: cells across the face
    dp_m: int = 16  # dp-pixelate: pixels that may differ between neighbouring images
    k: int = 10  # k-same: faces averaged into each surrogate
    face_bank: str | None = None  # k-same: folder of face images added to the pool
    keep: tuple[str, ...] = ()  # surrogate: attributes of the original kept ("gender", "age")
    svd_k: int = 1  # svd: singular values kept (and perturbed) per channel (README: k 1 identifies least)
    svd_size: int = 64  # svd: side of the aligned chip the decomposition runs on
    # landmarks the chip methods align on: the detector's 5 points, or dlib's 68-point
    # predictor on detector rows (the ``align`` extra)
    landmarks: Literal["5", "68"] = "5"
    # adversarial (anonymize/adversarial.py; --epsilon is then in /255 code values, default 6)
    adv_steps: int = 2  # PGD steps a frame from the track's last perturbation (first frame: 20)
    adv_objective: Literal["untargeted", "targeted", "k-anonymity"] = "untargeted"
    adv_eot: bool = True  # expectation over JPEG-like quantisation and resizes (encoder robustness)
    device: Literal["cpu", "cuda"] = "cpu"  # torch device of the torch methods
    # generate (anonymize/generate.py): an exported generator ONNX (None = the shipped
    # engines/generator-64.onnx), the per-face fallback and the smallest box side it serves
    generator: str | None = None
    generate_fallback: Literal["blur", "solid"] = "blur"
    generate_min_size: int = 24
    # generate --adversarial (anonymize/generate_adversarial.py): the generated face is then
    # perturbed as --method adversarial does (--epsilon, --steps, --objective, --no-eot)
    generate_adversarial: bool = False
    # Selective anonymisation (anonymize/selective.py): rectangles x0,y0,x1,y1 or polygons
    # x0,y0,x1,y1,x2,y2,... in pixels, or relative when every value is in [0, 1]
    only_regions: tuple[tuple[float, ...], ...] = ()  # anonymise only inside these
    ignore_regions: tuple[tuple[float, ...], ...] = ()  # never change these pixels
    keep_faces: tuple[str, ...] = ()  # photos of consenting people left visible (the eval extra)

    def __post_init__(self) -> None:
        self._check_mask()
        self._check_face_methods()
        self._check_adversarial_and_generate()
        self._normalise_regions()

    def _check_mask(self) -> None:
        """The mask and the simple fills (every method)."""
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
        _check(self.seed is None or isinstance(self.seed, int), "seed", self.seed, "an integer or None")

    def _check_face_methods(self) -> None:
        """dp-pixelate, k-same, surrogate, svd and the landmarks they align on."""
        _check(
            self.epsilon is None or (isinstance(self.epsilon, (int, float)) and 0 < self.epsilon <= 1000),
            "epsilon",
            self.epsilon,
            "a number in (0, 1000] or None (the method's default)",
        )
        _check(
            isinstance(self.dp_cells, int) and 2 <= self.dp_cells <= 64,
            "dp_cells",
            self.dp_cells,
            "an integer in [2, 64]",
        )
        _check(isinstance(self.dp_m, int) and 1 <= self.dp_m <= 4096, "dp_m", self.dp_m, "an integer in [1, 4096]")
        _check(isinstance(self.k, int) and 2 <= self.k <= 1000, "k", self.k, "an integer in [2, 1000]")
        if isinstance(self.keep, list | tuple):
            object.__setattr__(self, "keep", tuple(self.keep))
        keep_ok = isinstance(self.keep, tuple) and all(a in KEEP_ATTRIBUTES for a in self.keep)
        _check(keep_ok, "keep", self.keep, "a list of 'gender', 'age'")
        _check(isinstance(self.svd_k, int) and 1 <= self.svd_k <= 64, "svd_k", self.svd_k, "an integer in [1, 64]")
        _check(
            isinstance(self.svd_size, int) and 8 <= self.svd_size <= 256,
            "svd_size",
            self.svd_size,
            "an integer in [8, 256]",
        )
        _check(self.landmarks in ("5", "68"), "landmarks", self.landmarks, "'5' or '68'")

    def _check_adversarial_and_generate(self) -> None:
        steps_ok = isinstance(self.adv_steps, int) and 1 <= self.adv_steps <= 100
        _check(steps_ok, "adv_steps", self.adv_steps, "an integer in [1, 100]")
        objectives = ("untargeted", "targeted", "k-anonymity")
        allowed = ", ".join(f"'{o}'" for o in objectives)
        _check(self.adv_objective in objectives, "adv_objective", self.adv_objective, allowed)
        _check(isinstance(self.adv_eot, bool), "adv_eot", self.adv_eot, "true or false")
        _check(self.device in ("cpu", "cuda"), "device", self.device, "'cpu' or 'cuda'")
        _check(self.generator is None or isinstance(self.generator, str), "generator", self.generator, "a path or None")
        fallbacks = ("blur", "solid")
        _check(self.generate_fallback in fallbacks, "generate_fallback", self.generate_fallback, "'blur' or 'solid'")
        min_ok = isinstance(self.generate_min_size, int) and 8 <= self.generate_min_size <= 1024
        _check(min_ok, "generate_min_size", self.generate_min_size, "an integer in [8, 1024]")
        adv = self.generate_adversarial
        _check(isinstance(adv, bool), "generate_adversarial", adv, "true or false")

    def _normalise_regions(self) -> None:
        """Regions and keep-face photos as tuples (regions checked: ``geometry.check_region``)."""
        for name in ("only_regions", "ignore_regions"):
            regions = tuple(tuple(float(v) for v in r) for r in getattr(self, name))
            if regions:
                for r in regions:
                    check_region(r)
            object.__setattr__(self, name, regions)
        object.__setattr__(self, "keep_faces", tuple(str(p) for p in self.keep_faces))


def check_hwaccel(value: str) -> str:
    if value not in ("auto", "none", *DECODE_DEVICES):
        raise ConfigError(f"invalid --hwaccel {value!r}: expected auto, none or one of {', '.join(DECODE_DEVICES)}")
    return value


def check_encoder(value: str) -> str:
    if value in ("auto", "none"):
        return value
    try:
        av.codec.Codec(value, "w")
    except (av.error.FFmpegError, ValueError):
        raise ConfigError(
            f"invalid --encoder {value!r}: this FFmpeg has no such encoder (auto, none or a name)"
        ) from None
    return value


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
    hwaccel: str = "auto"  # --hwaccel: decode device (auto: CUDA if one opens, else software), none, or a device
    encoder: str = "none"  # --encoder: none (= codec in software), auto (NVENC if one opens), or an encoder's name

    def __post_init__(self) -> None:
        check_hwaccel(self.hwaccel)
        check_encoder(self.encoder)
        _check(isinstance(self.crf, int) and 0 <= self.crf <= 51, "crf", self.crf, "an integer in [0, 51]")
        _check(self.on_error in ("mask-frame", "abort"), "on_error", self.on_error, "'mask-frame' or 'abort'")
        _check(
            isinstance(self.queue_size, int) and 1 <= self.queue_size <= 256,
            "queue_size",
            self.queue_size,
            "an integer in [1, 256]",
        )
        object.__setattr__(self, "encoder_options", tuple((str(k), str(v)) for k, v in self.encoder_options))


OnStall = Literal["repeat", "black"]


@dataclass(frozen=True)
class LiveConfig:
    """Live-mode settings (the ``live feeds`` options of ``streamanon.options``), validated.

    ``streamanon.live.options.LiveOptions`` builds it from parsed options (it knows which
    inputs are real-time feeds).
    """

    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    input_format: str | None = None
    input_options: tuple[tuple[str, str], ...] = ()
    output_format: str | None = None
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect: bool = True
    max_retries: int = 0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    on_stall: OnStall = "repeat"
    stall_after: float = 0.5
    segment: float | None = None
    fps: float | None = None
    duration: float | None = None
    loop: bool = False
    drop: bool = True
    #: The input produces frames in real time (a camera, a network feed, stdin with --live).
    #: Stdin read at our pace (a file piped in) is not: a slow frame there is no stall, so
    #: no filler is written for it.
    realtime: bool = True
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"

    def __post_init__(self) -> None:
        checks = [
            (self.rtsp_transport in ("tcp", "udp"), "--rtsp-transport", self.rtsp_transport, "tcp or udp"),
            (self.open_timeout > 0, "--open-timeout", self.open_timeout, "a number > 0"),
            (self.read_timeout > 0, "--read-timeout", self.read_timeout, "a number > 0"),
            (self.max_retries >= 0, "--max-retries", self.max_retries, "an integer >= 0"),
            (
                0 < self.backoff_initial <= self.backoff_max,
                "--reconnect-delay-max",
                self.backoff_max,
                f"a number >= {self.backoff_initial}",
            ),
            (self.on_stall in ("repeat", "black"), "--on-stall", self.on_stall, "repeat or black"),
            (self.stall_after > 0, "--stall-after", self.stall_after, "a number > 0"),
            (self.segment is None or self.segment >= 0.5, "--segment", self.segment, "a number of seconds >= 0.5"),
            (self.fps is None or 0 < self.fps <= 240, "--fps", self.fps, "a number in (0, 240]"),
            (self.duration is None or self.duration > 0, "--duration", self.duration, "a number > 0"),
            (
                self.metrics_port is None or 0 <= self.metrics_port <= 65535,
                "--metrics-port",
                self.metrics_port,
                "a port number",
            ),
        ]
        for ok, name, value, allowed in checks:
            if not ok:
                raise ConfigError(f"invalid {name} {value!r}: expected {allowed}")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run needs, composed of the per-stage configs."""

    detect: DetectConfig = field(default_factory=DetectConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    anonymize: AnonymizeConfig = field(default_factory=AnonymizeConfig)
    io: IOConfig = field(default_factory=IOConfig)

    _PARTS: ClassVar[dict[str, type[Any]]] = {
        "detect": DetectConfig,
        "track": TrackConfig,
        "anonymize": AnonymizeConfig,
        "io": IOConfig,
    }

    @property
    def engine(self) -> EngineConfig:
        """The runtime every model of the run loads on (``--backend``, ``--precision``,
        ``--threads``, ``--engine-dir``): the detector's settings, so one set of flags
        places the detector, the generator, the recognisers and the landmark networks."""
        return EngineConfig.from_detect(self.detect)

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
