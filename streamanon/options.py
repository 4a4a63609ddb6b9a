"""Every option of the product, declared once.

An ``Option`` names its flag, the ``PipelineConfig`` (or ``LiveOptions``) field it sets,
its type, default and help, the modes it applies to (``file``, ``folder``, ``live``,
``streams``, ``batch``, ``eval``) and the methods it applies to. From ``OPTIONS`` come:

- the argparse flags of every command (``add_arguments``),
- the ``streamanon streams`` TOML tables (``values_from_table``: every unknown key of a
  table reported at once with a did-you-mean, types checked, one line naming the table),
- ``PipelineConfig`` from parsed values (``config_from_values``, the CLI's and the TOML's),
- the check that an option given applies to the mode and the method (``check_applies``),
- ``streamanon eval``'s method parameters (``eval_params``: ``blur:strength=2``),
- the generated reference ``docs/options.md`` (``streamanon.cli_reference``).

A TOML key is the flag's long name with ``_`` (``--mask-scale`` -> ``mask_scale``); the
config field it sets may differ (``--steps`` -> ``anonymize.adv_steps``): that mapping is
the ``field`` of its declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from .anonymize import METHODS
from .anonymize.selective import parse_region
from .config import (
    BACKENDS,
    DECODE_DEVICES,
    PRECISIONS,
    AnonymizeConfig,
    DetectConfig,
    IOConfig,
    LiveConfig,
    PipelineConfig,
    TrackConfig,
)
from .errors import ConfigError, VerificationError

FILE, FOLDER, LIVE, STREAMS, BATCH, EVAL = "file", "folder", "live", "streams", "batch", "eval"
MODES = (FILE, FOLDER, LIVE, STREAMS, BATCH, EVAL)
#: How an error message names a mode.
MODE_NAMES = {
    FILE: "files",
    FOLDER: "folders",
    LIVE: "live feeds",
    STREAMS: "streams",
    BATCH: "batch",
    EVAL: "eval",
}
#: The modes of ``streamanon INPUT``: one parser, the mode known from the inputs.
RUN = frozenset({FILE, FOLDER, LIVE})
ALL = frozenset(MODES)
PIPELINE = ALL  # options of the pipeline itself: every mode
NO_EVAL = ALL - {EVAL}
FEEDS = frozenset({LIVE, STREAMS})
NO_STREAMS = ALL - {STREAMS}
#: ``--method generate --adversarial``: options of adversarial perturbation apply there too.
GENERATE_ADVERSARIAL = "generate --adversarial"
_ADV = ("adversarial", GENERATE_ADVERSARIAL)

#: Argument groups, in the order the parsers show them, with their description.
GROUPS: dict[str, str | None] = {
    "": None,  # the command's own options (no group)
    "anonymisation": None,
    "selective anonymisation": None,
    "detection and tracking": None,
    "encoding": None,
    "verification of the output": None,
    "live feeds": "used when the input or output is rtsp://, rtmp://, http(s)://, udp://, srt://, /dev/video*, "
    "or - (stdin/stdout)",
    "streams": "the top level of a streams TOML file only",
}


# -- value parsers: text (a flag's argument, a TOML string) -> value; ConfigError when invalid ---------
def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``MM:SS(.s)`` or ``HH:MM:SS(.s)`` (``--start``/``--duration``)."""
    parts = str(text).strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if (
        not values
        or len(values) > 3
        or any(not math.isfinite(v) or v < 0 for v in values)
        or any(v >= 60 for v in values[1:])
    ):
        raise ConfigError(f"invalid time {text!r}: use seconds (12.5), MM:SS or HH:MM:SS(.ms)")
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def parse_color(text: str) -> tuple[int, int, int]:
    """``R,G,B`` or ``#RRGGBB``."""
    s = text.strip().lstrip("#")
    try:
        if "," in s:
            r, g, b = (int(v) for v in s.split(","))
            return r, g, b
        if len(s) == 6:
            return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
    except ValueError:
        pass
    raise ConfigError(f"invalid color {text!r}: use R,G,B or #RRGGBB")


def parse_kv(text: str) -> tuple[str, str]:
    """``KEY=VALUE``."""
    if "=" not in text:
        raise ConfigError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def parse_list(text: str) -> tuple[str, ...]:
    """A comma list: ``A,B``."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _number(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"expected {'integer' if kind is int else 'number'}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


_int, _float = _number(int), _number(float)

Kind = Literal["str", "int", "float", "bool", "time", "color", "region", "kv", "list"]
_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": _int,
    "float": _float,
    "time": parse_time,
    "color": parse_color,
    "region": parse_region,
    "kv": parse_kv,
    "list": parse_list,
}
#: How docs/options.md names each kind of value.
KIND_NAMES: dict[str, str] = {
    "str": "text",
    "int": "integer",
    "float": "number",
    "bool": "true/false",
    "time": "seconds or [HH:]MM:SS",
    "color": "R,G,B or #RRGGBB",
    "region": "X0,Y0,X1,Y1[,...]",
    "kv": "KEY=VALUE",
    "list": "A,B,...",
}
_UNSET: Any = object()


@dataclass(frozen=True)
class Option:
    """One option (module doc).

    Attributes:
        flag: the long flag, ``--mask-scale``; its TOML key is ``mask_scale``.
        help: the help text.
        group: the argument group it is shown in (``GROUPS``).
        field: ``PART.NAME`` it sets: a ``PipelineConfig`` part (``detect``, ``track``,
            ``anonymize``, ``io``), ``live`` (``LiveOptions``), or empty: read by the command.
        kind: the type of its value (``KIND_NAMES``); ``bool`` is an on/off flag.
        default: its default; by default the ``field``'s dataclass default.
        choices: the values allowed.
        metavar: the argument's name in the help.
        repeat: repeatable (``--only-region A --only-region B``; a TOML list).
        invert: the field is the negation of the flag (``--no-eot`` -> ``adv_eot``).
        negation: a second flag storing false into the same value, and its help (``--no-reconnect``).
        modes: where it applies (``MODES``).
        methods: the ``--method`` values it applies to (empty: every method);
            ``GENERATE_ADVERSARIAL`` is ``generate`` with ``--adversarial``.
        eval_keys: ``{method: key}``: its name in an eval method spec (``blur:strength=2``).
        shared: in a streams file it is set at the top level, for every feed (one detector).
    """

    flag: str
    help: str
    group: str
    field: str = ""
    kind: Kind = "str"
    default: Any = _UNSET
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    repeat: bool = False
    invert: bool = False
    negation: tuple[str, str] | None = None
    modes: frozenset[str] = PIPELINE
    methods: tuple[str, ...] = ()
    eval_keys: Mapping[str, str] = dc_field(default_factory=dict)
    shared: bool = False

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    key = dest  # its TOML key

    @property
    def value_default(self) -> Any:
        """The value when the option is not given (before ``to_field``)."""
        if self.default is not _UNSET:
            return self.default
        if self.repeat:
            return []
        part, _, name = self.field.partition(".")
        cls = {**_PARTS, "live": LiveConfig}.get(part)
        if cls is None:
            return False if self.kind == "bool" else None
        value = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        return (not value) if self.invert else value

    def parse(self, text: str) -> Any:
        """A flag's argument (or a TOML string) -> its value; ConfigError when invalid."""
        value = _PARSERS[self.kind](text)
        if self.choices and value not in self.choices:
            raise ConfigError(f"invalid choice {text!r} (choose from {', '.join(self.choices)})")
        return value

    def to_field(self, value: Any) -> Any:
        """The parsed value -> the config field's value."""
        if self.invert:
            return not value
        if self.repeat:
            return tuple(value)
        return value

    def applies_to_method(self, method: str) -> bool:
        return not self.methods or method in self.methods


def _o(flag: str, help: str, group: str, field: str = "", **kw: Any) -> Option:
    return Option(flag, help, group, field, **kw)


_A, _S, _D, _E, _V, _L, _T = (
    "anonymisation",
    "selective anonymisation",
    "detection and tracking",
    "encoding",
    "verification of the output",
    "live feeds",
    "streams",
)
_a, _d, _t, _io, _l = AnonymizeConfig, DetectConfig, TrackConfig, IOConfig, LiveConfig

OPTIONS: tuple[Option, ...] = (
    # -- the command's own ------------------------------------------------------------------------
    _o(
        "--start",
        "process from this time on (seconds, MM:SS or HH:MM:SS.ms; videos only): the output holds only "
        "the span, audio included, and starts at 0",
        "",
        kind="time",
        default=0.0,
        metavar="TIME",
        modes=frozenset({FILE, FOLDER}),
    ),
    _o(
        "--review",
        "output NOT anonymised: draw boxes, scores and track ids to check a run (files only; NAME_review.EXT)",
        "",
        kind="bool",
        modes=frozenset({FILE, FOLDER}),
    ),
    # -- anonymisation ----------------------------------------------------------------------------
    _o(
        "--method",
        f"one of: {', '.join(sorted(METHODS))} (default {_a.method}; generate requires "
        "'pip install streamanon[align]', adversarial 'pip install streamanon[torch]')",
        _A,
        "anonymize.method",
    ),
    _o("--shape", "mask shape (default ellipse)", _A, "anonymize.shape", choices=("ellipse", "box")),
    _o("--mask-scale", "grow masks by this factor (default 1.3)", _A, "anonymize.mask_scale", kind="float"),
    _o(
        "--mask-margin",
        f"then by this many pixels on every side (default {_a.mask_margin:g})",
        _A,
        "anonymize.mask_margin",
        kind="float",
    ),
    _o("--color", "fill colour for --method solid (R,G,B or #RRGGBB)", _A, "anonymize.color", kind="color"),
    _o(
        "--blur-strength",
        "blur radius multiplier (default 1)",
        _A,
        "anonymize.blur_strength",
        kind="float",
        eval_keys={"blur": "strength"},
    ),
    _o(
        "--pixel-blocks",
        "mosaic blocks across a face (default 8)",
        _A,
        "anonymize.pixel_blocks",
        kind="int",
        eval_keys={"pixelate": "blocks"},
    ),
    _o("--feather", "soft mask edge, fraction of the face (default 0)", _A, "anonymize.feather", kind="float"),
    _o(
        "--epsilon",
        "privacy parameter of dp-pixelate (per channel and track, default 1) "
        "and svd (per unit of singular value, default 0.01); "
        "for adversarial the L-inf bound in /255 code values (default 6)",
        _A,
        "anonymize.epsilon",
        kind="float",
        methods=("dp-pixelate", "svd", *_ADV),
        eval_keys={"dp-pixelate": "eps", "svd": "eps", "adversarial": "eps", "generate": "adv"},
    ),
    _o(
        "--dp-cells",
        f"dp-pixelate: cells across the face (default {_a.dp_cells})",
        _A,
        "anonymize.dp_cells",
        kind="int",
        methods=("dp-pixelate",),
        eval_keys={"dp-pixelate": "cells"},
    ),
    _o(
        "--dp-m",
        f"dp-pixelate: pixels two neighbouring images may differ in (default {_a.dp_m})",
        _A,
        "anonymize.dp_m",
        kind="int",
        methods=("dp-pixelate",),
        eval_keys={"dp-pixelate": "m"},
    ),
    _o(
        "--k",
        f"k-same: faces averaged into each surrogate (default {_a.k})",
        _A,
        "anonymize.k",
        kind="int",
        methods=("k-same", *_ADV),
        eval_keys={"k-same": "k", "adversarial": "k"},
    ),
    _o(
        "--face-bank",
        "k-same: folder of face images added to the pool; surrogate: a bank .npz or a folder of "
        "<person>/<photo> sub-folders of consenting people (composites built at start)",
        _A,
        "anonymize.face_bank",
        metavar="DIR",
        methods=("k-same", "surrogate", *_ADV),
        eval_keys={"k-same": "bank", "adversarial": "bank"},
    ),
    _o(
        "--svd-k",
        f"svd: singular values kept per channel (default {_a.svd_k})",
        _A,
        "anonymize.svd_k",
        kind="int",
        methods=("svd",),
        eval_keys={"svd": "k"},
    ),
    _o(
        "--svd-size",
        f"svd: aligned chip side in pixels (default {_a.svd_size})",
        _A,
        "anonymize.svd_size",
        kind="int",
        methods=("svd",),
        eval_keys={"svd": "size"},
    ),
    _o(
        "--landmarks",
        "k-same/svd align faces on the detector's 5 points (default) or dlib's 68 (pip install 'streamanon[align]')",
        _A,
        "anonymize.landmarks",
        choices=("5", "68"),
        methods=("k-same", "svd", "generate"),
    ),
    _o(
        "--steps",
        f"adversarial: PGD steps a frame from the track's last perturbation (default {_a.adv_steps}; "
        "a track's first frame: 20)",
        _A,
        "anonymize.adv_steps",
        kind="int",
        methods=_ADV,
        eval_keys={"adversarial": "steps", "generate": "steps"},
    ),
    _o(
        "--objective",
        "adversarial: away from the face's own embedding (default), towards a secret per-track decoy from "
        "--face-bank, or k-anonymity against --face-bank (--k)",
        _A,
        "anonymize.adv_objective",
        choices=("untargeted", "targeted", "k-anonymity"),
        methods=_ADV,
        eval_keys={"adversarial": "objective", "generate": "objective"},
    ),
    _o(
        "--no-eot",
        "adversarial: no expectation over encoder-like transformations (less robust to encoding)",
        _A,
        "anonymize.adv_eot",
        kind="bool",
        invert=True,
        methods=_ADV,
    ),
    _o(
        "--device",
        "adversarial: torch device (default cpu)",
        _A,
        "anonymize.device",
        choices=("cpu", "cuda"),
        methods=_ADV,
    ),
    _o(
        "--adversarial",
        "generate: then perturb the generated face (at most --epsilon /255 inside its mask) so that dlib's "
        "recogniser moves away from the original face (--steps, --objective, --no-eot, --device as for adversarial)",
        _A,
        "anonymize.generate_adversarial",
        kind="bool",
        methods=("generate",),
    ),
    _o(
        "--generator",
        "generate: exported generator ONNX (default: the shipped engines/generator-64.onnx; a TensorRT engine "
        "built for it by build_engines.py is used where available)",
        _A,
        "anonymize.generator",
        metavar="PATH",
        methods=("generate",),
        eval_keys={"generate": "model"},
    ),
    _o(
        "--generate-fallback",
        "generate: what faces the generator cannot serve get (too small, no landmarks, extreme pose; default blur)",
        _A,
        "anonymize.generate_fallback",
        choices=("blur", "solid"),
        methods=("generate",),
        eval_keys={"generate": "fallback"},
    ),
    _o(
        "--generate-min-size",
        f"generate: smallest face box side it generates (default {_a.generate_min_size}); "
        "smaller ones get the fallback",
        _A,
        "anonymize.generate_min_size",
        kind="int",
        metavar="PX",
        methods=("generate",),
        eval_keys={"generate": "min"},
    ),
    _o(
        "--seed",
        "seed of the randomised methods (default: a fresh secret each run)",
        _A,
        "anonymize.seed",
        kind="int",
        modes=NO_EVAL,  # eval's subcommands have a --seed of their own (default 0)
    ),
    # -- selective anonymisation ------------------------------------------------------------------
    _o(
        "--only-region",
        "anonymise only inside this rectangle (or polygon X0,Y0,X1,Y1,X2,Y2,...; "
        "pixels, or relative when all values are in [0, 1]); repeatable",
        _S,
        "anonymize.only_regions",
        kind="region",
        repeat=True,
        metavar="X0,Y0,X1,Y1",
    ),
    _o(
        "--ignore-region",
        "never change the pixels of this rectangle or polygon (burned-in overlays, a private garden); repeatable",
        _S,
        "anonymize.ignore_regions",
        kind="region",
        repeat=True,
        metavar="X0,Y0,X1,Y1",
    ),
    _o(
        "--keep-face",
        "leave this consenting person visible: a photo with exactly one face; "
        "only a confident, repeated match is kept (dlib's recogniser: pip install 'streamanon[eval]'); repeatable",
        _S,
        "anonymize.keep_faces",
        repeat=True,
        metavar="PHOTO",
    ),
    # -- detection and tracking ------------------------------------------------------------------
    _o(
        "--threshold",
        f"face score threshold (default {_d.threshold})",
        _D,
        "detect.threshold",
        kind="float",
        shared=True,
    ),
    _o(
        "--det-size",
        "network input long side (default: native resolution, at most 1920; "
        "live feeds: the largest that keeps up with the frame rate)",
        _D,
        "detect.det_size",
        kind="int",
        shared=True,
    ),
    _o("--batch", f"frames per detector call (default {_d.batch})", _D, "detect.batch", kind="int", shared=True),
    _o(
        "--providers",
        "ONNX Runtime providers, comma separated, or 'auto'",
        _D,
        "detect.providers",
        kind="list",
        shared=True,
    ),
    _o(
        "--threads",
        "CPU threads per detector call (default: all cores but one, split over --detect-workers)",
        _D,
        "detect.threads",
        kind="int",
        shared=True,
    ),
    _o(
        "--detect-workers",
        "detector calls run at once on consecutive frames (default: 2 for a CPU backend with 2+ cores, else 1)",
        _D,
        "detect.workers",
        kind="int",
        shared=True,
    ),
    _o(
        "--backend",
        "inference backend (default auto: TensorRT, else ONNX Runtime on a GPU, else OpenVINO, "
        "else ONNX Runtime on the CPU)",
        _D,
        "detect.backend",
        choices=BACKENDS,
        shared=True,
    ),
    _o(
        "--precision",
        "network precision (default auto: fp16 on TensorRT, bf16 on OpenVINO where the CPU has it natively, else fp32)",
        _D,
        "detect.precision",
        choices=PRECISIONS,
        shared=True,
    ),
    _o(
        "--engine-dir",
        "folder of TensorRT engines built by build_engines.py",
        _D,
        "detect.engine_dir",
        shared=True,
    ),
    _o(
        "--detect-every",
        f"run the detector every N frames (default {_t.detect_every})",
        _D,
        "track.detect_every",
        kind="int",
    ),
    _o(
        "--max-coast",
        f"keep masking a lost face for N frames (default {_t.max_coast})",
        _D,
        "track.max_coast",
        kind="int",
    ),
    _o("--no-track", "mask raw detections only", _D, "track.enabled", kind="bool", invert=True),
    # small-face tiles keep a schedule per video (detect/tiles.py), which a detector shared by
    # several feeds cannot: not in streams
    _o(
        "--small-faces",
        "also detect on upscaled tiles (faces under ~32 px; costs time); "
        "auto: on for 1080p and larger frames, or when the first frames show faces under 32 px "
        "(files only, not live feeds) (default off: tiles cost 3-9x the speed)",
        _D,
        "detect.small_faces",
        choices=("auto", "on", "off"),
        modes=NO_STREAMS,
    ),
    _o(
        "--tile-scale",
        f"--small-faces: tile upscaling (default {_d.tile_scale:g})",
        _D,
        "detect.tile_scale",
        kind="float",
        modes=NO_STREAMS,
    ),
    _o(
        "--tile-every",
        f"--small-faces: visit each tile at least every N detector frames (default {_d.tile_every})",
        _D,
        "detect.tile_every",
        kind="int",
        modes=NO_STREAMS,
    ),
    _o(
        "--max-face-size",
        "drop detections larger than this (sqrt of the box area; drone footage)",
        _D,
        "detect.max_face_size",
        kind="float",
        metavar="PX",
        modes=NO_STREAMS,
    ),
    # -- encoding ---------------------------------------------------------------------------------
    _o("--codec", "video encoder (default libx264; webm->vp9, gif->gif)", _E, "io.codec"),
    _o(
        "--hwaccel",
        "hardware decode: auto (NVDEC when a CUDA device opens, else software), none, or a device "
        f"({', '.join(DECODE_DEVICES[:3])}...) that must open (default {_io.hwaccel})",
        _E,
        "io.hwaccel",
    ),
    _o(
        "--encoder",
        "hardware encode: none (--codec, in software), auto (h264_nvenc/hevc_nvenc for libx264/libx265 "
        f"when one opens, else --codec), or an encoder name that must open (default {_io.encoder})",
        _E,
        "io.encoder",
    ),
    _o("--crf", f"quality, lower is better (default {_io.crf})", _E, "io.crf", kind="int"),
    _o("--preset", f"encoder preset (default {_io.preset})", _E, "io.preset"),
    _o(
        "--encoder-opt",
        "extra encoder option (repeatable)",
        _E,
        "io.encoder_options",
        kind="kv",
        repeat=True,
        metavar="KEY=VALUE",
    ),
    _o("--no-audio", "drop audio (default: copied bit-exactly)", _E, "io.audio", kind="bool", invert=True),
    _o("--keep-metadata", "keep container/EXIF metadata (default: stripped)", _E, "io.keep_metadata", kind="bool"),
    _o(
        "--on-error",
        "a frame that fails is fully masked (default) or the run stops",
        _E,
        "io.on_error",
        choices=("mask-frame", "abort"),
    ),
    # -- verification -----------------------------------------------------------------------------
    _o(
        "--verify",
        "after writing, scan the output with another detector (dlib HOG + CNN) and compare each face "
        "found with the input's face there (dlib's recogniser); a match exits with code "
        f"{VerificationError.exit_code} (pip install 'streamanon[eval]')",
        _V,
        kind="bool",
        modes=frozenset({FILE, FOLDER, BATCH, STREAMS}),
    ),
    _o(
        "--verify-every",
        "--verify every N-th frame only (implies --verify; default: every frame; 0: no verification)",
        _V,
        kind="int",
        default=None,
        metavar="N",
        modes=frozenset({FILE, FOLDER, BATCH, STREAMS}),
    ),
    # -- live feeds -------------------------------------------------------------------------------
    _o(
        "--rtsp-transport",
        "RTSP transport for input and output (default tcp)",
        _L,
        "live.rtsp_transport",
        choices=("tcp", "udp"),
        modes=FEEDS,
    ),
    _o(
        "--input-format",
        "force the demuxer (v4l2, mpegts, mpjpeg, hls...); stdin defaults to mpegts",
        _L,
        "live.input_format",
        metavar="FMT",
        modes=FEEDS,
    ),
    _o(
        "--input-option",
        "FFmpeg demuxer/protocol option, e.g. video_size=1280x720 (repeatable)",
        _L,
        "live.input_options",
        kind="kv",
        repeat=True,
        metavar="KEY=VALUE",
        modes=FEEDS,
    ),
    _o(
        "--output-format",
        "force the muxer (default: rtsp, flv for rtmp://, mpegts for udp/srt/stdout)",
        _L,
        "live.output_format",
        metavar="FMT",
        modes=FEEDS,
    ),
    _o(
        "--open-timeout",
        f"give up opening a live input after S seconds (default {_l.open_timeout:g})",
        _L,
        "live.open_timeout",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--read-timeout",
        f"a live input that sends nothing for S seconds is stalled: reconnect (default {_l.read_timeout:g})",
        _L,
        "live.read_timeout",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--reconnect",
        "reconnect with exponential backoff when the input drops or stalls (default)",
        _L,
        "live.reconnect",
        kind="bool",
        negation=("--no-reconnect", "stop when the input drops or stalls"),
        modes=FEEDS,
    ),
    _o(
        "--max-retries",
        "give up after N failed reconnection attempts in a row (default 0: never)",
        _L,
        "live.max_retries",
        kind="int",
        metavar="N",
        modes=FEEDS,
    ),
    _o(
        "--reconnect-delay-max",
        f"longest wait between reconnection attempts (default {_l.backoff_max:g})",
        _L,
        "live.backoff_max",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--on-stall",
        "while the input is down, repeat the last anonymised frame or send black (default repeat)",
        _L,
        "live.on_stall",
        choices=("repeat", "black"),
        modes=FEEDS,
    ),
    _o(
        "--stall-after",
        f"start filling the output after S seconds without a processed frame (default {_l.stall_after:g})",
        _L,
        "live.stall_after",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--segment",
        "write the output as S-second files; -o is a strftime pattern, e.g. 'out/%%Y%%m%%d-%%H%%M%%S.mp4'",
        _L,
        "live.segment",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--fps",
        "nominal output frame rate (default: the input's, else 25)",
        _L,
        "live.fps",
        kind="float",
        modes=FEEDS,
    ),
    _o(
        "--duration",
        "files: process this long from --start (the output holds only the span); live feeds: stop after "
        "this long and finalise the output (seconds, MM:SS or HH:MM:SS.ms)",
        _L,
        "live.duration",
        kind="time",
        metavar="TIME",
        modes=frozenset({FILE, FOLDER, LIVE, STREAMS}),
    ),
    _o("--loop", "loop a file input that is streamed to a live output", _L, "live.loop", kind="bool", modes=FEEDS),
    _o(
        "--no-drop",
        "block instead of dropping frames when processing falls behind (stdin never drops unless --live)",
        _L,
        kind="bool",
        modes=FEEDS,
    ),
    _o(
        "--live",
        "stdin is a real-time feed (e.g. ffmpeg reading a camera): drop frames to keep up, as for cameras",
        _L,
        kind="bool",
        modes=FEEDS,
    ),
    _o(
        "--metrics-port",
        "serve Prometheus metrics on PORT (needs streamanon[live])",
        _L,
        "live.metrics_port",
        kind="int",
        metavar="PORT",
        modes=FEEDS,
        shared=True,
    ),
    _o(
        "--metrics-addr",
        f"address for --metrics-port (default {_l.metrics_addr})",
        _L,
        "live.metrics_addr",
        metavar="ADDR",
        modes=FEEDS,
        shared=True,
    ),
    # -- streams file only (top level) -------------------------------------------------------------
    _o(
        "--max-wait-ms",
        "how long a shared detector call waits for a batch to fill (0 to 1000; default 0: never waits)",
        _T,
        kind="float",
        default=0.0,
        modes=frozenset({STREAMS}),
        shared=True,
    ),
    _o(
        "--report-dir",
        "each feed's JSON report as REPORT_DIR/NAME.json (unless its [[stream]] sets report)",
        _T,
        default=None,
        modes=frozenset({STREAMS}),
        shared=True,
    ),
)

_PARTS: dict[str, type[Any]] = {
    "detect": DetectConfig,
    "track": TrackConfig,
    "anonymize": AnonymizeConfig,
    "io": IOConfig,
}
BY_DEST: dict[str, Option] = {o.dest: o for o in OPTIONS}
#: The main parameter of each eval method spec: ``blur:2`` is ``blur:strength=2``.
EVAL_MAIN: dict[str, str] = {
    "blur": "strength",
    "pixelate": "blocks",
    "dp-pixelate": "eps",
    "svd": "eps",
    "k-same": "k",
    "adversarial": "eps",
    "generate": "model",
}


def options_for(modes: Collection[str]) -> list[Option]:
    """The options that apply to any of ``modes``, in their declaration order."""
    return [o for o in OPTIONS if o.modes & set(modes)]


def defaults(modes: Collection[str]) -> dict[str, Any]:
    """``{dest: default}`` of the options of ``modes`` (what a parser's namespace holds untouched)."""
    return {o.dest: o.value_default for o in options_for(modes)}


# -- argparse ---------------------------------------------------------------------------------------
def _argtype(opt: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return _PARSERS[opt.kind](text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = opt.kind
    return parse


def add_arguments(
    parser: argparse.ArgumentParser,
    modes: Collection[str],
    groups: Sequence[str] | None = None,
    flags: Iterable[str] | None = None,
) -> list[argparse.Action]:
    """Add the flags of the options that apply to ``modes`` (of ``groups``, or only ``flags``).

    Options of group ``""`` go on ``parser`` itself; the others into their argument group,
    made once per parser. Returns the actions added.
    """
    wanted = set(flags) if flags is not None else None
    made: dict[str | None, Any] = {g.title: g for g in parser._action_groups}
    actions: list[argparse.Action] = []
    for opt in options_for(modes):
        if (groups is not None and opt.group not in groups) or (wanted is not None and opt.flag not in wanted):
            continue
        container: Any = parser
        if opt.group:
            container = made.get(opt.group)
            if container is None:
                container = made[opt.group] = parser.add_argument_group(opt.group, GROUPS.get(opt.group))
        kw: dict[str, Any] = {"default": opt.value_default, "help": opt.help}
        if opt.kind == "bool":
            kw["action"] = "store_true"
        else:
            if opt.kind != "str":
                kw["type"] = _argtype(opt)
            if opt.choices:
                kw["choices"] = list(opt.choices)
            if opt.metavar:
                kw["metavar"] = opt.metavar
            if opt.repeat:
                kw["action"] = "append"
        actions.append(container.add_argument(opt.flag, **kw))
        if opt.negation:
            negation, help = opt.negation
            actions.append(container.add_argument(negation, dest=opt.dest, action="store_false", help=help))
    return actions


# -- what was given where it does not apply ------------------------------------------------------------
def _names(modes: Iterable[str]) -> str:
    words = [MODE_NAMES[m] for m in MODES if m in set(modes)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def given_flag(opt: Option, value: Any) -> str:
    """The flag the user typed for ``opt`` (``--no-reconnect`` when that stored the value)."""
    return opt.negation[0] if opt.negation and value is False else opt.flag


def check_applies(given: Mapping[str, Any], mode: str, method: str | None = None, toml: bool = False) -> None:
    """ConfigError when an option given (``{dest: value}``) does not apply to ``mode`` or ``method``.

    The options that do not apply to the mode are named together, in one line; then the
    first option of another method. ``toml``: name them by their TOML key, not their flag.
    """
    opts = [(BY_DEST[d], v) for d, v in given.items() if d in BY_DEST]

    def name(o: Option, v: Any) -> str:
        return o.key if toml else given_flag(o, v)

    wrong = [(o, v) for o, v in opts if mode not in o.modes]
    if wrong:
        flags = ", ".join(sorted(name(o, v) for o, v in wrong))
        places = sorted({_names(o.modes) for o, _ in wrong})
        verb = "applies" if len(wrong) == 1 else "apply"
        raise ConfigError(f"{flags} only {verb} to {' or '.join(places)}, not to {MODE_NAMES[mode]}")
    if method is None:
        return
    actual = GENERATE_ADVERSARIAL if method == "generate" and given.get("adversarial") else method
    for o, v in opts:
        if not (o.applies_to_method(method) or o.applies_to_method(actual)):
            raise ConfigError(
                f"{name(o, v)} is an option of --method {' or '.join(o.methods)}, not of --method {actual}"
            )


# -- PipelineConfig ---------------------------------------------------------------------------------
def config_from_values(values: Mapping[str, Any]) -> PipelineConfig:
    """``PipelineConfig`` from ``{dest: value}`` (a namespace's, or a streams table's).

    A value missing keeps the field's default.
    """
    parts: dict[str, dict[str, Any]] = {name: {} for name in _PARTS}
    for opt in OPTIONS:
        part, _, name = opt.field.partition(".")
        if part in parts and opt.dest in values:
            parts[part][name] = opt.to_field(values[opt.dest])
    return PipelineConfig(**{name: cls(**parts[name]) for name, cls in _PARTS.items()})


def live_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{LiveOptions field: value}`` of the live options in ``values``."""
    out = {}
    for opt in OPTIONS:
        part, _, name = opt.field.partition(".")
        if part == "live" and opt.dest in values:
            out[name] = opt.to_field(values[opt.dest])
    return out


def verify_every(verify: bool, every: int | None) -> int:
    """``--verify`` / ``--verify-every N`` (or ``verify``/``verify_every`` in a streams table)
    as one number: 0 no verification, N every N-th frame."""
    if every is None:
        return 1 if verify else 0
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(f"invalid --verify-every {every!r}: expected an integer >= 1 (0: no verification)")
    if every == 0 and verify:
        raise ConfigError("--verify-every 0 turns verification off: drop --verify, or give N >= 1")
    return every


# -- a TOML table -------------------------------------------------------------------------------------
def _did_you_mean(key: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def unknown_keys(keys: Iterable[str], known: Collection[str]) -> str:
    """``'blurr' (did you mean 'blur_strength'?), 'start' (an option of files and folders only)``:
    every key of ``keys`` not in ``known``."""
    out = []
    for k in keys:
        if k in known:
            continue
        opt = BY_DEST.get(k)
        out.append(f"{k!r} (an option of {_names(opt.modes)} only)" if opt else f"{k!r}{_did_you_mean(k, known)}")
    return ", ".join(out)


def _toml_value(opt: Option, value: Any) -> Any:
    """A TOML value -> the option's value (as its flag's argument would give); ConfigError."""
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}")
        return value
    if opt.repeat:
        items = value if isinstance(value, list) else [value]
        if opt.kind == "kv" and isinstance(value, Mapping):
            return [(str(k), str(v)) for k, v in value.items()]
        return [_item(opt, v) for v in items]
    return _item(opt, value)


def _item(opt: Option, value: Any) -> Any:
    if isinstance(value, str):
        return opt.parse(value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if opt.kind in ("int",) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if opt.kind in ("float", "time") and numeric:
        if opt.kind == "time" and value < 0:
            raise ConfigError(f"invalid time {value!r}: expected seconds >= 0")
        return float(value)
    if opt.kind == "str" and numeric and opt.choices:  # landmarks = 68
        return opt.parse(str(value))
    if opt.kind in ("region", "color", "list") and isinstance(value, list) and value:
        if opt.kind == "list" and all(isinstance(v, str) for v in value):
            return tuple(value)
        if opt.kind != "list" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return opt.parse(",".join(str(v) for v in value))
    raise ConfigError(f"expected {KIND_NAMES[opt.kind]}, got {value!r}")


def _resolve(key: str, allowed: Collection[str]) -> tuple[str, bool] | None:
    """``(dest, negated)`` of a TOML key among the ``allowed`` dests; None when unknown."""
    name = key.replace("-", "_")
    if name in allowed:
        return name, False
    if _NEGATIONS.get(name) in allowed:  # no_reconnect = true
        return _NEGATIONS[name], True
    negated = f"no_{name}"
    if negated in allowed and BY_DEST[negated].kind == "bool":  # audio = false: --no-audio
        return negated, True
    return None


def values_from_table(table: Mapping[str, Any], where: str, allowed: Collection[str]) -> dict[str, Any]:
    """``{dest: value}`` from a TOML table whose keys must be among the ``allowed`` dests.

    ``KEY = false`` sets an option ``--no-KEY`` (``audio = false``), ``no_KEY = true`` the
    negation of ``--KEY`` (``no_reconnect = true``, as ``reconnect = false``). Raises
    ConfigError naming ``where`` and the key: every unknown key at once, each with a
    did-you-mean; a value of the wrong type.
    """
    resolved = {str(k): _resolve(str(k), allowed) for k in table}
    bad = [k for k, r in resolved.items() if r is None]
    if bad:
        plural = "s" if len(bad) > 1 else ""
        raise ConfigError(f"{where}: unknown option{plural} {unknown_keys(bad, allowed)}")
    out: dict[str, Any] = {}
    for key, r in resolved.items():
        assert r is not None
        dest, negated = r
        opt = BY_DEST[dest]
        try:
            value = _toml_value(opt, table[key])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        out[dest] = (not value) if negated else value
    return out


_NEGATIONS = {o.negation[0][2:].replace("-", "_"): o.dest for o in OPTIONS if o.negation}


# -- eval method parameters -------------------------------------------------------------------------
def eval_params(method: str) -> dict[str, Option]:
    """``{key: option}``: the parameters an eval method spec takes (``blur:strength=2``)."""
    return {o.eval_keys[method]: o for o in OPTIONS if method in o.eval_keys}
