"""Command line: ``streamanon INPUT [-o OUTPUT] [options]`` and subcommands.

Subcommands: ``SUBCOMMANDS`` (each with its line of ``--help`` in ``SUBCOMMAND_HELP``). Errors
print one line on stderr and exit with the code of their class (``streamanon.errors.EXIT_CODES``);
``-v`` adds tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from . import __version__
from .anonymize import METHODS
from .anonymize.review import review_from_args
from .anonymize.selective import parse_region
from .backends.onnxruntime import available_providers
from .backends.openvino import openvino_status
from .backends.registry import load_registry, resolve_model
from .backends.tensorrt import tensorrt_status
from .cliutil import ArgParser, setup_logging
from .config import BACKENDS, PRECISIONS, AnonymizeConfig, DetectConfig, IOConfig, PipelineConfig, TrackConfig
from .detect.centerface import resolve_backend
from .errors import EXIT_CODES, ConfigError, SinkError, SourceOpenError, StreamanonError, VerificationError
from .io import hwaccel, is_image_path, is_live, is_video_path, redact
from .live import run_live
from .live.options import add_live_options, live_flags_given
from .pipeline import Interrupted, Stages
from .runner import RunReport, collect_pool, default_output, package_versions, process_file, write_report
from .verify import verifier_from_args, verify_line

log = logging.getLogger("streamanon")

# name -> "module:function"; imported only when used, so the core never imports eval/Ray.
SUBCOMMANDS: dict[str, str] = {
    "eval": "streamanon.eval.cli:main",
    "batch": "streamanon.batch:main",
    "doctor": "streamanon.cli:doctor_command",
    "train": "streamanon.generate.cli:train_main",  # train generator DATA... -o MODEL.pt
    "export": "streamanon.generate.cli:export_main",  # export generator MODEL.pt -o MODEL.onnx
    "demo": "streamanon.demo:main",
    "streams": "streamanon.live.streams:main",
}
# name -> one line for ``streamanon --help`` (every subcommand has one: tests/core/test_cli_help.py).
SUBCOMMAND_HELP: dict[str, str] = {
    "demo": "make a short clip with two faces, anonymise it and check the result",
    "doctor": "versions, OpenVINO/ONNX Runtime/TensorRT status, the backend auto picks, model checks",
    "eval": "measure privacy and quality: identity, attack, detect, video, temporal, generator",
    "batch": "resumable, parallel anonymisation of an archive folder (Ray: extra [cluster])",
    "streams": "many live feeds from one TOML file in one process, one shared detector",
    "train": "train generator DATA... -o MODEL.pt: train the face generator (extra [torch])",
    "export": "export generator MODEL.pt -o MODEL.onnx: export a trained generator to ONNX",
}


def _color(text: str) -> tuple[int, int, int]:
    s = text.strip().lstrip("#")
    try:
        if "," in s:
            r, g, b = (int(v) for v in s.split(","))
            return r, g, b
        if len(s) == 6:
            return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"invalid color {text!r}: use R,G,B or #RRGGBB")


def _region(text: str) -> tuple[float, ...]:
    try:
        return parse_region(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def add_pipeline_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """Options that map one-to-one onto ``PipelineConfig`` fields (shared by run and batch).

    ``seed=False`` leaves ``--seed`` to a caller that defines its own (``streamanon eval``).
    """
    d, t, a, io = DetectConfig(), TrackConfig(), AnonymizeConfig(), IOConfig()
    g = p.add_argument_group("anonymisation")
    g.add_argument(
        "--method",
        default=a.method,
        help=f"one of: {', '.join(sorted(METHODS))} (default {a.method}; generate requires "
        "'pip install streamanon[align]', adversarial 'pip install streamanon[torch]')",
    )
    g.add_argument("--shape", default=a.shape, choices=["ellipse", "box"], help="mask shape (default ellipse)")
    g.add_argument("--mask-scale", type=float, default=a.mask_scale, help="grow masks by this factor (default 1.3)")
    g.add_argument(
        "--mask-margin",
        type=float,
        default=a.mask_margin,
        help=f"then by this many pixels on every side (default {a.mask_margin:g})",
    )
    g.add_argument("--color", type=_color, default=a.color, help="fill colour for --method solid (R,G,B or #RRGGBB)")
    g.add_argument("--blur-strength", type=float, default=a.blur_strength, help="blur radius multiplier (default 1)")
    g.add_argument("--pixel-blocks", type=int, default=a.pixel_blocks, help="mosaic blocks across a face (default 8)")
    g.add_argument("--feather", type=float, default=a.feather, help="soft mask edge, fraction of the face (default 0)")
    g.add_argument(
        "--epsilon",
        type=float,
        default=a.epsilon,
        help="privacy parameter of dp-pixelate (per channel and track, default 1) "
        "and svd (per unit of singular value, default 0.01); "
        "for adversarial the L-inf bound in /255 code values (default 6)",
    )
    g.add_argument(
        "--dp-cells", type=int, default=a.dp_cells, help=f"dp-pixelate: cells across the face (default {a.dp_cells})"
    )
    g.add_argument(
        "--dp-m",
        type=int,
        default=a.dp_m,
        help=f"dp-pixelate: pixels two neighbouring images may differ in (default {a.dp_m})",
    )
    g.add_argument(
        "--k",
        type=int,
        default=a.k,
        help=f"k-same, surrogate with a --face-bank folder: persons averaged into each surrogate (default {a.k})",
    )
    g.add_argument(
        "--face-bank",
        default=a.face_bank,
        metavar="DIR",
        help="k-same: folder of face images added to the pool; surrogate: a bank .npz or a folder of "
        "<person>/<photo> sub-folders of consenting people (composites built at start)",
    )
    if "--keep" not in p._option_string_actions:  # eval temporal has its own --keep DIR
        g.add_argument(
            "--keep",
            dest="keep_attributes",
            type=lambda v: tuple(x.strip() for x in v.split(",") if x.strip()),
            default=a.keep,
            metavar="gender,age",
            help="surrogate: draw each face's composite from bank composites of the original's gender and/or "
            "age band (FaceRes estimates them once per track)",
        )
    g.add_argument(
        "--svd-k", type=int, default=a.svd_k, help=f"svd: singular values kept per channel (default {a.svd_k})"
    )
    g.add_argument(
        "--svd-size", type=int, default=a.svd_size, help=f"svd: aligned chip side in pixels (default {a.svd_size})"
    )
    g.add_argument(
        "--landmarks",
        default=a.landmarks,
        choices=["5", "68"],
        help="k-same/svd align faces on the detector's 5 points (default) "
        "or dlib's 68 (pip install 'streamanon[align]')",
    )
    g.add_argument(
        "--steps",
        type=int,
        default=a.adv_steps,
        help=f"adversarial: PGD steps a frame from the track's last perturbation (default {a.adv_steps}; "
        "a track's first frame: 20)",
    )
    g.add_argument(
        "--objective",
        default=a.adv_objective,
        choices=["untargeted", "targeted", "k-anonymity"],
        help="adversarial: away from the face's own embedding (default), towards a secret per-track decoy from "
        "--face-bank, or k-anonymity against --face-bank (--k)",
    )
    g.add_argument(
        "--no-eot",
        action="store_true",
        help="adversarial: no expectation over encoder-like transformations (less robust to encoding)",
    )
    g.add_argument(
        "--device", default=a.device, choices=["cpu", "cuda"], help="adversarial: torch device (default cpu)"
    )
    g.add_argument(
        "--adversarial",
        action="store_true",
        help="generate: then perturb the generated face (at most --epsilon /255 inside its mask) so that dlib's "
        "recogniser moves away from the original face (--steps, --objective, --no-eot, --device as for adversarial)",
    )
    g.add_argument(
        "--generator",
        default=a.generator,
        metavar="PATH",
        help="generate: exported generator ONNX (default: the shipped engines/generator-64.onnx; a TensorRT engine "
        "built for it by build_engines.py is used where available)",
    )
    g.add_argument(
        "--generate-fallback",
        default=a.generate_fallback,
        choices=["blur", "solid"],
        help="generate: what faces the generator cannot serve get "
        "(too small, no landmarks, extreme pose; default blur)",
    )
    g.add_argument(
        "--generate-min-size",
        type=int,
        default=a.generate_min_size,
        metavar="PX",
        help=f"generate: smallest face box side it generates (default {a.generate_min_size}); "
        "smaller ones get the fallback",
    )
    if seed:
        g.add_argument(
            "--seed", type=int, default=a.seed, help="seed of the randomised methods (default: a fresh secret each run)"
        )
    g = p.add_argument_group("selective anonymisation")
    g.add_argument(
        "--only-region",
        type=_region,
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="anonymise only inside this rectangle (or polygon X0,Y0,X1,Y1,X2,Y2,...; "
        "pixels, or relative when all values are in [0, 1]); repeatable",
    )
    g.add_argument(
        "--ignore-region",
        type=_region,
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="never change the pixels of this rectangle or polygon (burned-in overlays, a private garden); repeatable",
    )
    g.add_argument(
        "--keep-face",
        action="append",
        default=[],
        metavar="PHOTO",
        help="leave this consenting person visible: a photo with exactly one face; "
        "only a confident, repeated match is kept (dlib's recogniser: pip install 'streamanon[eval]'); repeatable",
    )
    g = p.add_argument_group("detection and tracking")
    g.add_argument("--threshold", type=float, default=d.threshold, help=f"face score threshold (default {d.threshold})")
    g.add_argument(
        "--det-size",
        type=int,
        default=d.det_size,
        help="network input long side (default: native resolution, at most 1920; "
        "live feeds: the largest that keeps up with the frame rate)",
    )
    g.add_argument("--batch", type=int, default=d.batch, help=f"frames per detector call (default {d.batch})")
    g.add_argument(
        "--providers", default=",".join(d.providers), help="ONNX Runtime providers, comma separated, or 'auto'"
    )
    g.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="CPU threads per detector call (default: all cores but one, split over --detect-workers)",
    )
    g.add_argument(
        "--detect-workers",
        type=int,
        default=d.workers,
        help="detector calls run at once on consecutive frames (default: 2 for a CPU backend with 2+ cores, else 1)",
    )
    g.add_argument(
        "--backend",
        default=d.backend,
        choices=list(BACKENDS),
        help="inference backend (default auto: TensorRT, else ONNX Runtime on a GPU, else OpenVINO, "
        "else ONNX Runtime on the CPU)",
    )
    g.add_argument(
        "--precision",
        default=d.precision,
        choices=list(PRECISIONS),
        help="network precision (default auto: fp16 on TensorRT, "
        "bf16 on OpenVINO where the CPU has it natively, else fp32)",
    )
    g.add_argument("--engine-dir", default=d.engine_dir, help="folder of TensorRT engines built by build_engines.py")
    g.add_argument(
        "--detect-every",
        type=int,
        default=t.detect_every,
        help=f"run the detector every N frames (default {t.detect_every})",
    )
    g.add_argument(
        "--max-coast",
        type=int,
        default=t.max_coast,
        help=f"keep masking a lost face for N frames (default {t.max_coast})",
    )
    g.add_argument("--no-track", action="store_true", help="mask raw detections only")
    g.add_argument(
        "--small-faces",
        default=d.small_faces,
        choices=["auto", "on", "off"],
        help="also detect on upscaled tiles (faces under ~32 px; costs time); "
        "auto: on for 1080p and larger frames, or when the first frames show faces under 32 px "
        "(files only, not live feeds) (default off: tiles cost 3-9x the speed)",
    )
    g.add_argument(
        "--tile-scale",
        type=float,
        default=d.tile_scale,
        help=f"--small-faces: tile upscaling (default {d.tile_scale:g})",
    )
    g.add_argument(
        "--tile-every",
        type=int,
        default=d.tile_every,
        help=f"--small-faces: visit each tile at least every N detector frames (default {d.tile_every})",
    )
    g.add_argument(
        "--max-face-size",
        type=float,
        default=d.max_face_size,
        metavar="PX",
        help="drop detections larger than this (sqrt of the box area; drone footage)",
    )
    g = p.add_argument_group("encoding")
    g.add_argument("--codec", default=io.codec, help="video encoder (default libx264; webm->vp9, gif->gif)")
    g.add_argument(
        "--hwaccel",
        default=hwaccel.DEFAULT_HWACCEL,
        help="hardware decode: auto (NVDEC when a CUDA device opens, else software), none, or a device "
        f"({', '.join(hwaccel.DECODE_DEVICES[:3])}...) that must open (default {hwaccel.DEFAULT_HWACCEL})",
    )
    g.add_argument(
        "--encoder",
        default=hwaccel.DEFAULT_ENCODER,
        help="hardware encode: none (--codec, in software), auto (h264_nvenc/hevc_nvenc for libx264/libx265 "
        f"when one opens, else --codec), or an encoder name that must open (default {hwaccel.DEFAULT_ENCODER})",
    )
    g.add_argument("--crf", type=int, default=io.crf, help=f"quality, lower is better (default {io.crf})")
    g.add_argument("--preset", default=io.preset, help=f"encoder preset (default {io.preset})")
    g.add_argument(
        "--encoder-opt",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra encoder option (repeatable)",
    )
    g.add_argument("--no-audio", action="store_true", help="drop audio (default: copied bit-exactly)")
    g.add_argument("--keep-metadata", action="store_true", help="keep container/EXIF metadata (default: stripped)")
    g.add_argument(
        "--on-error",
        default=io.on_error,
        choices=["mask-frame", "abort"],
        help="a frame that fails is fully masked (default) or the run stops",
    )


def add_verify_options(p: argparse.ArgumentParser) -> None:
    """``--verify`` / ``--verify-every N`` (run, batch, streams; see streamanon/verify.py)."""
    g = p.add_argument_group("verification of the output")
    g.add_argument(
        "--verify",
        action="store_true",
        help="after writing, scan the output with another detector (dlib HOG + CNN) and compare each face "
        "found with the input's face there (dlib's recogniser); a match exits with code "
        f"{VerificationError.exit_code} (pip install 'streamanon[eval]')",
    )
    g.add_argument(
        "--verify-every",
        type=int,
        default=None,
        metavar="N",
        help="--verify every N-th frame only (implies --verify; default: every frame)",
    )


def config_from_args(ns: argparse.Namespace) -> PipelineConfig:
    """The one place where CLI options become a ``PipelineConfig``."""
    providers = tuple(p.strip() for p in ns.providers.split(",") if p.strip())
    return PipelineConfig(
        detect=DetectConfig(
            threshold=ns.threshold,
            det_size=ns.det_size,
            batch=ns.batch,
            providers=providers,
            threads=ns.threads,
            workers=ns.detect_workers,
            backend=ns.backend,
            precision=ns.precision,
            engine_dir=ns.engine_dir,
            small_faces=getattr(ns, "small_faces", "off"),
            tile_scale=getattr(ns, "tile_scale", DetectConfig.tile_scale),
            tile_every=getattr(ns, "tile_every", DetectConfig.tile_every),
            max_face_size=getattr(ns, "max_face_size", None),
        ),
        track=TrackConfig(enabled=not ns.no_track, detect_every=ns.detect_every, max_coast=ns.max_coast),
        anonymize=AnonymizeConfig(
            method=ns.method,
            shape=ns.shape,
            mask_scale=ns.mask_scale,
            mask_margin=ns.mask_margin,
            color=ns.color,
            blur_strength=ns.blur_strength,
            pixel_blocks=ns.pixel_blocks,
            feather=ns.feather,
            seed=getattr(ns, "seed", None),
            epsilon=ns.epsilon,
            dp_cells=ns.dp_cells,
            dp_m=ns.dp_m,
            k=ns.k,
            face_bank=ns.face_bank,
            keep=getattr(ns, "keep_attributes", ()),
            svd_k=ns.svd_k,
            svd_size=ns.svd_size,
            landmarks=ns.landmarks,
            adv_steps=ns.steps,
            adv_objective=ns.objective,
            adv_eot=not ns.no_eot,
            device=ns.device,
            generate_adversarial=getattr(ns, "adversarial", False),
            only_regions=tuple(getattr(ns, "only_region", ())),
            ignore_regions=tuple(getattr(ns, "ignore_region", ())),
            keep_faces=tuple(getattr(ns, "keep_face", ())),
            generator=getattr(ns, "generator", None),
            generate_fallback=getattr(ns, "generate_fallback", AnonymizeConfig.generate_fallback),
            generate_min_size=getattr(ns, "generate_min_size", AnonymizeConfig.generate_min_size),
        ),
        io=IOConfig(
            codec=ns.codec,
            crf=ns.crf,
            preset=ns.preset,
            encoder_options=tuple(ns.encoder_opt),
            audio=not ns.no_audio,
            keep_metadata=ns.keep_metadata,
            on_error=ns.on_error,
            hwaccel=getattr(ns, "hwaccel", IOConfig.hwaccel),
            encoder=getattr(ns, "encoder", IOConfig.encoder),
        ),
    )


def run_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in SUBCOMMANDS) + 2
    p = ArgParser(
        prog="streamanon",
        usage=f"%(prog)s INPUT [INPUT ...] [-o OUTPUT] [options]\n       %(prog)s {{{','.join(SUBCOMMANDS)}}} ...",
        description="Anonymise every face in videos, images, folders (one or several) or a live feed.\n\n"
        "subcommands (streamanon SUBCOMMAND --help for their options):\n"
        + "\n".join(f"  {name:<{width}}{SUBCOMMAND_HELP.get(name, '')}" for name in SUBCOMMANDS),
        epilog=textwrap.fill("Exit codes: " + "; ".join(f"{v} {k}" for k, v in EXIT_CODES.items()), width=100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="video, image, folder, or live URL (rtsp://, http://, /dev/video0, -)")
    p.add_argument(
        "more_inputs",
        nargs="*",
        default=[],
        metavar="INPUT",
        help="more videos, images or folders: each is written into the -o folder under its own name "
        "(without -o: beside it, as NAME_anonymized.EXT); -o must then be a folder",
    )
    p.add_argument(
        "-o",
        "--output",
        help="output file/folder/URL (default NAME_anonymized.EXT beside the input); an incomplete output "
        "(interrupted, truncated input) is left as NAME.partial.EXT, never under the final name",
    )
    p.add_argument(
        "--report",
        type=Path,
        help="write a JSON report (boxes, scores, landmarks; never pixels); checked before the run starts",
    )
    p.add_argument(
        "--start",
        type=parse_time,
        default=0.0,
        metavar="TIME",
        help="process from this time on (seconds, MM:SS or HH:MM:SS.ms; videos only): the output holds only "
        "the span, audio included, and starts at 0",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    p.add_argument("--version", action="version", version=f"streamanon {__version__}")
    p.add_argument(
        "--review",
        action="store_true",
        help="output NOT anonymised: draw boxes, scores and track ids to check a run (files only; NAME_review.EXT)",
    )
    add_pipeline_options(p)
    add_verify_options(p)
    live_actions = add_live_options(p)
    for action in live_actions:  # --duration: a span of a file too (--start), and MM:SS
        if action.dest == "duration":
            action.type = parse_time
            action.metavar = "TIME"
            action.help = (
                "files: process this long from --start (the output holds only the span); live feeds: stop after "
                "this long and finalise the output (seconds, MM:SS or HH:MM:SS.ms)"
            )
    p.set_defaults(live_actions=[a for a in live_actions if a.dest != "duration"])
    return p


def _sigterm_as_interrupt() -> Callable[[], None]:
    """SIGTERM behaves like Ctrl-C: stop, finalise what was processed, exit non-zero."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGTERM, old)

    return restore


#: Method-specific options: dest, flag, the methods they apply to ("generate --adversarial":
#: only with --adversarial). Given with another method they are an error, not ignored.
_ADV = ("adversarial", "generate --adversarial")
METHOD_OPTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("epsilon", "--epsilon", ("dp-pixelate", "svd", *_ADV)),
    ("dp_cells", "--dp-cells", ("dp-pixelate",)),
    ("dp_m", "--dp-m", ("dp-pixelate",)),
    ("k", "--k", ("k-same", "surrogate", *_ADV)),
    ("face_bank", "--face-bank", ("k-same", "surrogate", *_ADV)),
    ("keep_attributes", "--keep", ("surrogate",)),
    ("svd_k", "--svd-k", ("svd",)),
    ("svd_size", "--svd-size", ("svd",)),
    ("landmarks", "--landmarks", ("k-same", "svd", "generate")),
    ("steps", "--steps", _ADV),
    ("objective", "--objective", _ADV),
    ("no_eot", "--no-eot", _ADV),
    ("device", "--device", _ADV),
    ("adversarial", "--adversarial", ("generate",)),
    ("generator", "--generator", ("generate",)),
    ("generate_fallback", "--generate-fallback", ("generate",)),
    ("generate_min_size", "--generate-min-size", ("generate",)),
)


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests the user set on the command line (also to their default value, or abbreviated)."""
    saved = [(a, a.default) for a in parser._actions]
    for a, _ in saved:
        if a.dest != "help":
            a.default = argparse.SUPPRESS
    try:
        ns = parser.parse_intermixed_args(argv)
    finally:
        for a, default in saved:
            a.default = default
    return set(vars(ns))


def check_method_options(ns: argparse.Namespace, given: set[str]) -> None:
    """ConfigError naming the first given option that does not apply to ``--method``."""
    method = ns.method
    if method == "generate" and getattr(ns, "adversarial", False):
        method = "generate --adversarial"
    for dest, flag, methods in METHOD_OPTIONS:
        if dest in given and method not in methods and ns.method not in methods:
            raise ConfigError(f"{flag} is an option of --method {' or '.join(methods)}, not of --method {method}")


def check_report_path(path: Path) -> None:
    """ConfigError unless ``--report`` can be written (checked before any frame is processed)."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--report {path} is a folder: give a file name")
    if not parent.is_dir():
        raise ConfigError(f"--report {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--report {path} is not writable")


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``MM:SS(.s)`` or ``HH:MM:SS(.s)`` (``--start``/``--duration``)."""
    parts = text.strip().split(":")
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
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: use seconds (12.5), MM:SS or HH:MM:SS(.ms)")
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def _collect(inp: Path, out: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """The media files of folder ``inp`` with their outputs under ``out``, and the files skipped."""
    jobs: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    for path in sorted(inp.rglob("*")):
        if not path.is_file():
            continue
        if not path.name.startswith(".") and (is_image_path(path) or is_video_path(path)):
            jobs.append((path, out / path.relative_to(inp)))
        else:
            skipped.append(path)
    return jobs, skipped


def _plan(inputs: list[Path], output: str | None) -> tuple[list[tuple[Path, Path]], list[Path], bool]:
    """Jobs ``(input file, output file)``, files skipped, and whether it is a many-file run."""

    for inp in inputs:
        if not inp.exists():
            raise SourceOpenError(f"input not found: {inp}", source=str(inp))
    if len(inputs) == 1 and not inputs[0].is_dir():
        return [(inputs[0], Path(output) if output else default_output(inputs[0]))], [], False
    out_dir = Path(output) if output else None
    if out_dir is not None and len(inputs) > 1:
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"-o {out_dir} is a file: with several inputs, -o names a folder")
        if not out_dir.exists() and (is_video_path(out_dir) or is_image_path(out_dir)):
            raise ConfigError(f"-o {out_dir} looks like a file: with several inputs, -o names a folder")
    jobs: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    for inp in inputs:
        if inp.is_dir():
            if out_dir is None:
                out = inp.with_name(inp.name + "_anonymized")
            else:
                out = out_dir if len(inputs) == 1 else out_dir / inp.resolve().name
            if out.resolve() == inp.resolve() or inp.resolve() in out.resolve().parents:
                raise SinkError(f"output folder {out} must not be the input folder or inside it")
            found, skip = _collect(inp, out)
            jobs += found
            skipped += skip
        else:
            jobs.append((inp, default_output(inp) if out_dir is None else out_dir / inp.name))
    seen: dict[Path, Path] = {}
    for src, dst in jobs:
        key = dst.resolve()
        if key in seen:
            raise ConfigError(f"{seen[key]} and {src} would both be written to {dst}")
        seen[key] = src
    if not jobs:
        raise SourceOpenError(f"no image or video files in {', '.join(map(str, inputs))}", source=str(inputs[0]))
    return jobs, skipped, True


def _failed_report(src: Path, dst: Path, exc: BaseException) -> Any:
    kind = "image" if is_image_path(src) else "video"
    return RunReport(str(src), str(dst), kind, error=redact(str(exc)))


def _summary_line(rep: Any) -> str:
    tracks = f"{rep.tracks} face track{'s' * (rep.tracks != 1)}, " if rep.kind == "video" else ""
    return (
        f"{rep.input} -> {rep.output}: {rep.frames} frame{'s' * (rep.frames != 1)}, {tracks}"
        f"{rep.detections} detection{'s' * (rep.detections != 1)} ({rep.faces} boxes anonymised), "
        f"{rep.seconds:.1f} s, {rep.fps:.1f} fps"
    )


def _totals(reports: list[Any], jobs: int, failed: int, skipped: list[Path], seconds: float) -> dict[str, Any]:
    """The folder/many-input report's totals (``seconds``: wall clock of the whole call)."""
    frames = sum(r.frames for r in reports)
    interrupted = sum(1 for r in reports if r.interrupted)
    return {
        "files": jobs,
        "files_done": sum(1 for r in reports if r.error is None and not r.interrupted),
        "files_failed": failed,
        "files_interrupted": interrupted,
        "files_not_processed": jobs - len(reports),
        "files_skipped": len(skipped),
        "skipped": [str(p) for p in skipped],
        "frames": frames,
        "frames_written": sum(r.frames_written for r in reports),
        "frames_lost": sum(r.frames_lost for r in reports),
        "tracks": sum(r.tracks for r in reports),
        "detections": sum(r.detections for r in reports),
        "faces": sum(r.faces for r in reports),
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 2) if seconds > 0 else 0.0,
    }


def _totals_line(t: dict[str, Any]) -> str:
    parts = [f"{t['files_done']} done", f"{t['files_failed']} failed"]
    if t["files_interrupted"]:
        parts.append(f"{t['files_interrupted']} interrupted")
    if t["files_not_processed"]:
        parts.append(f"{t['files_not_processed']} not started")
    skipped = f"{t['files_skipped']} other files skipped (not images or videos"
    skipped += ": listed with -v and in --report)" if t["files_skipped"] else ")"
    return (
        f"streamanon: {t['files']} files: {', '.join(parts)}; {skipped}; {t['frames']} frames, "
        f"{t['tracks']} face tracks, {t['detections']} detections in {t['seconds']:.1f} s ({t['fps']:.1f} fps)"
    )


def run_command(argv: list[str]) -> int:
    t0 = time.perf_counter()
    parser = run_parser()
    ns = parser.parse_intermixed_args(argv)
    setup_logging(ns.verbose)
    given = given_options(parser, argv)
    check_method_options(ns, given)
    config = config_from_args(ns)
    review = review_from_args(ns)  # --review: refused for live, warns loudly, *_review output
    if ns.report is not None:
        check_report_path(ns.report)
    inputs = [ns.input, *ns.more_inputs]
    live = any(is_live(i) for i in inputs) or bool(ns.output and is_live(ns.output))
    if live and len(inputs) > 1:
        raise ConfigError("several inputs are for files and folders; run one live feed per call (or 'streams')")
    if live and "start" in given:
        raise ConfigError("--start applies to files, not live feeds (--duration: stop after that long)")
    if live:
        if ns.verify or ns.verify_every is not None:
            raise ConfigError("--verify applies to files, folders, batch and streams (not a single live feed)")
        return run_live(ns, config)
    unused = live_flags_given(ns, ns.live_actions)
    if unused:
        raise ConfigError(
            f"{', '.join(unused)} only appl{'ies' if len(unused) == 1 else 'y'} to live feeds "
            "(a network URL, /dev/video* or - as input or output)"
        )
    if ns.duration is not None and ns.duration <= 0:
        raise ConfigError("--duration must be > 0 seconds")
    jobs, skipped, many = _plan([Path(i) for i in inputs], ns.output)
    if not many and (ns.start or ns.duration is not None) and is_image_path(jobs[0][0]):
        raise ConfigError("--start/--duration apply to videos, not a still image")
    for path in skipped:
        log.info("skipped (not an image or video file): %s", path)
    span: tuple[float, float | None] = (ns.start or 0.0, ns.duration)

    verifier = verifier_from_args(ns.verify, ns.verify_every)  # before any work: exit 9 without dlib
    stages = Stages(config, anonymizer=review)  # models load once for every file
    pool = None
    if stages.anonymizer_factory.pooled and len(jobs) > 1:
        # k-same over a folder: the pool is the folder's faces (a first pass over every file)
        pool = collect_pool([src for src, _ in jobs], config, stages, span=span)
    failures: list[tuple[Path, StreamanonError]] = []
    reports: list[RunReport] = []
    interrupted: RunReport | None = None
    for src, dst in jobs:
        if many:
            dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            rep: RunReport | None = process_file(
                src,
                dst,
                config,
                stages=stages,
                progress=not ns.quiet,
                report_frames=ns.report is not None,
                pool=pool,
                start=span[0],
                duration=span[1],
                verifier=verifier,
            )
        except (Interrupted, KeyboardInterrupt) as exc:
            interrupted = getattr(exc, "report", None) or _failed_report(src, dst, exc)
            interrupted.interrupted = True
            interrupted.error = "interrupted"
            reports.append(interrupted)
            break
        except StreamanonError as exc:
            rep = getattr(exc, "report", None)
            if not many:
                write_report(ns.report, rep, config)
                if rep is not None and rep.verify:
                    print(f"{src}: {verify_line(rep.verify)}", file=sys.stderr)
                raise
            log.error("%s: %s", src, exc)
            failures.append((src, exc))
            if rep is None:
                rep = _failed_report(src, dst, exc)
        if rep is not None:
            reports.append(rep)
            if not ns.quiet and rep.frames:
                print(_summary_line(rep), file=sys.stderr)
            if not ns.quiet and rep.verify:
                print(f"{src}: {verify_line(rep.verify)}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    totals = _totals(reports, len(jobs), len(failures), skipped, seconds)
    if not many:
        write_report(ns.report, reports[0] if reports else None, config)
    elif ns.report:
        doc = {"files": [json.loads(r.to_json(config)) for r in reports], "totals": totals}
        try:
            ns.report.write_text(json.dumps(doc, indent=1))
        except OSError as exc:
            raise SinkError(f"cannot write report {ns.report}: {exc.strerror}") from exc
    if many and not ns.quiet:
        print(_totals_line(totals), file=sys.stderr)
    if interrupted is not None:
        done = (
            f"{interrupted.frames_written} frames written to {interrupted.output} "
            f"(incomplete: {interrupted.frames_lost} frames not processed)"
            if interrupted.frames_written
            else "no frame written"
        )
        print(f"streamanon: interrupted: {done}", file=sys.stderr)
        return 130
    if failures:
        print(f"streamanon: {len(failures)} of {len(jobs)} files failed", file=sys.stderr)
        return max(exc.exit_code for _, exc in failures)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    restore = _sigterm_as_interrupt()
    try:
        if args and args[0] in SUBCOMMANDS and not Path(args[0]).exists():
            return _subcommand(args[0])(args[1:])
        return run_command(args)
    except StreamanonError as exc:
        if verbose:
            log.exception("failed")
        print(f"streamanon: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("streamanon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, Interrupted):
            print("streamanon: interrupted; output finalised with the frames processed so far", file=sys.stderr)
            return 130
        if verbose:
            raise
        print(
            f"streamanon: internal error: {type(exc).__name__}: {redact(str(exc))} (run with -v for details)",
            file=sys.stderr,
        )
        return 1
    finally:
        restore()


def _subcommand(name: str) -> Callable[[list[str]], int]:
    module, func = SUBCOMMANDS[name].split(":")
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return fn


def doctor_command(argv: list[str]) -> int:
    p = ArgParser(prog="streamanon doctor", description="check the installation: versions, providers, GPU, models")
    p.parse_args(argv)
    return doctor()


def doctor() -> int:
    """Print versions, ONNX Runtime providers, GPU/TensorRT availability and model checks."""
    print(f"streamanon {__version__}")
    for k, v in package_versions().items():
        print(f"  {k}: {v}")
    print(f"ONNX Runtime providers: {', '.join(available_providers())}")
    print(f"OpenVINO: {openvino_status()}")
    print(f"TensorRT: {tensorrt_status()}")
    try:
        choice = resolve_backend(DetectConfig())
        where = "CPU" if choice.on_cpu else "GPU"
        print(f"default backend: {choice.config.backend} {choice.config.precision} on the {where}")
    except StreamanonError as exc:
        ok_backend = False
        print(f"default backend: unusable ({exc})")
    else:
        ok_backend = True
    ok = True
    for name, entry in load_registry()["models"].items():
        try:
            path = resolve_model(name)
            print(f"model {name}: ok ({path})")
        except StreamanonError as exc:
            optional = "used_by" in entry  # eval-only models come with the [eval] extra
            ok = ok and optional
            print(f"model {name}: {'optional, ' if optional else ''}{exc}")
    return 0 if ok and ok_backend else 7
