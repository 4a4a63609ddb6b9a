"""Command line: ``streamanon INPUT [-o OUTPUT] [options]`` and subcommands.

Subcommands: ``eval`` (privacy/quality measurement), ``batch`` (archives), ``doctor``
(environment check). Errors print one line on stderr and exit with the code of their
class (``streamanon.errors.EXIT_CODES``); ``-v`` adds tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from . import __version__
from .anonymize import METHODS
from .config import BACKENDS, PRECISIONS, AnonymizeConfig, DetectConfig, IOConfig, PipelineConfig, TrackConfig
from .errors import EXIT_CODES, ConfigError, SinkError, SourceOpenError, StreamanonError
from .io import hwaccel, is_image_path, is_live, is_video_path, redact

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


class _ArgParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


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
    from .anonymize.selective import parse_region

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
    g.add_argument("--method", default=a.method, help=f"one of: {', '.join(sorted(METHODS))} (default {a.method})")
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
    g.add_argument("--k", type=int, default=a.k, help=f"k-same: faces averaged into each surrogate (default {a.k})")
    g.add_argument(
        "--face-bank",
        default=a.face_bank,
        metavar="DIR",
        help="k-same: folder of face images added to the pool; surrogate: a bank .npz or a folder of "
        "<person>/<photo> sub-folders of consenting people (composites built at start)",
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


def _run_parser() -> argparse.ArgumentParser:
    p = _ArgParser(
        prog="streamanon",
        description="Anonymise every face in a video, image or folder. Subcommands: eval, batch, doctor.",
        epilog="Exit codes: " + "; ".join(f"{v} {k}" for k, v in EXIT_CODES.items()),
    )
    p.add_argument("input", help="video, image, folder, or live URL (rtsp://, http://, /dev/video0, -)")
    p.add_argument("-o", "--output", help="output file/folder/URL (default NAME_anonymized.EXT beside the input)")
    p.add_argument("--report", type=Path, help="write a JSON report (boxes, scores, landmarks; never pixels)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    p.add_argument("--version", action="version", version=f"streamanon {__version__}")
    add_pipeline_options(p)
    from .live.options import add_live_options

    p.set_defaults(live_actions=add_live_options(p))
    return p


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "streamanon: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if not verbose:
        import av.logging

        av.logging.set_level(av.logging.PANIC)  # FFmpeg's chatter is not for end users


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


def _collect(inp: Path, out: Path) -> list[tuple[Path, Path]]:
    jobs: list[tuple[Path, Path]] = []
    for path in sorted(inp.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and (is_image_path(path) or is_video_path(path)):
            jobs.append((path, out / path.relative_to(inp)))
    return jobs


def run_command(argv: list[str]) -> int:
    ns = _run_parser().parse_args(argv)
    _setup_logging(ns.verbose)
    config = config_from_args(ns)
    if is_live(ns.input) or (ns.output and is_live(ns.output)):
        from .live import run_live  # live deps only when needed

        return run_live(ns, config)
    from .live.options import live_flags_given

    unused = live_flags_given(ns, ns.live_actions)
    if unused:
        raise ConfigError(
            f"{', '.join(unused)} only appl{'ies' if len(unused) == 1 else 'y'} to live feeds "
            "(a network URL, /dev/video* or - as input or output)"
        )
    from .runner import RunReport, default_output, process_file, write_report

    inp = Path(ns.input)
    if not inp.exists():
        raise SourceOpenError(f"input not found: {inp}", source=str(inp))
    if inp.is_dir():
        out = Path(ns.output) if ns.output else inp.with_name(inp.name + "_anonymized")
        if out.resolve() == inp.resolve() or inp.resolve() in out.resolve().parents:
            raise SinkError(f"output folder {out} must not be the input folder or inside it")
        jobs = _collect(inp, out)
        if not jobs:
            raise SourceOpenError(f"no image or video files in {inp}", source=str(inp))
    else:
        jobs = [(inp, Path(ns.output) if ns.output else default_output(inp))]

    from .pipeline import Stages

    stages = Stages(config)  # models load once for every file
    pool = None
    if stages.anonymizer_factory.pooled and len(jobs) > 1:
        # k-same over a folder: the pool is the folder's faces (a first pass over every file)
        from .runner import collect_pool

        pool = collect_pool([src for src, _ in jobs], config, stages)
    failures: list[tuple[Path, StreamanonError]] = []
    reports = []
    for src, dst in jobs:
        if len(jobs) > 1:
            dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            rep: RunReport | None = process_file(
                src, dst, config, stages=stages, progress=not ns.quiet, report_frames=ns.report is not None, pool=pool
            )
        except StreamanonError as exc:
            rep = getattr(exc, "report", None)
            if len(jobs) == 1:
                write_report(ns.report, rep, config)
                raise
            log.error("%s: %s", src, exc)
            failures.append((src, exc))
        if rep is not None:
            reports.append(rep)
        if rep is not None and not ns.quiet:
            print(f"{src} -> {dst}: {rep.frames} frames, {rep.faces} faces, {rep.fps:.1f} fps", file=sys.stderr)
    if len(jobs) == 1:
        write_report(ns.report, reports[0] if reports else None, config)
    elif ns.report:
        ns.report.write_text(
            json.dumps({"files": [r.summary(config) | {"frames_detail": r.per_frame} for r in reports]}, indent=1)
        )
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
        from .pipeline import Interrupted

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
    import importlib

    module, func = SUBCOMMANDS[name].split(":")
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return fn


def doctor_command(argv: list[str]) -> int:
    p = _ArgParser(prog="streamanon doctor", description="check the installation: versions, providers, GPU, models")
    p.parse_args(argv)
    return doctor()


def doctor() -> int:
    """Print versions, ONNX Runtime providers, GPU/TensorRT availability and model checks."""
    from .backends.onnxruntime import available_providers
    from .backends.registry import load_registry, resolve_model
    from .runner import package_versions

    print(f"streamanon {__version__}")
    for k, v in package_versions().items():
        print(f"  {k}: {v}")
    print(f"ONNX Runtime providers: {', '.join(available_providers())}")
    from .backends.openvino import openvino_status
    from .backends.tensorrt import tensorrt_status

    print(f"OpenVINO: {openvino_status()}")
    print(f"TensorRT: {tensorrt_status()}")
    try:
        from .detect.centerface import resolve_backend

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
