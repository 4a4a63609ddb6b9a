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
from typing import Any

from . import __version__
from .anonymize import METHODS
from .config import BACKENDS, PRECISIONS, AnonymizeConfig, DetectConfig, IOConfig, PipelineConfig, TrackConfig
from .errors import EXIT_CODES, ConfigError, SinkError, SourceOpenError, StreamanonError
from .io import is_image_path, is_live, is_video_path, redact

log = logging.getLogger("streamanon")

# name -> "module:function"; imported only when used, so the core never imports eval/Ray.
SUBCOMMANDS: dict[str, str] = {
    "eval": "streamanon.eval.cli:main",
    "batch": "streamanon.batch:main",
    "doctor": "streamanon.cli:doctor_command",
}


class _ArgParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, so errors stay one line."""

    def error(self, message: str) -> Any:  # type: ignore[override]
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


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """Options that map one-to-one onto ``PipelineConfig`` fields (shared by run and batch)."""
    d, t, a, io = DetectConfig(), TrackConfig(), AnonymizeConfig(), IOConfig()
    g = p.add_argument_group("anonymisation")
    g.add_argument("--method", default=a.method, help=f"one of: {', '.join(sorted(METHODS))} (default {a.method})")
    g.add_argument("--shape", default=a.shape, choices=["ellipse", "box"], help="mask shape (default ellipse)")
    g.add_argument("--mask-scale", type=float, default=a.mask_scale, help="grow masks by this factor (default 1.3)")
    g.add_argument("--mask-margin", type=float, default=a.mask_margin, help=f"then by this many pixels on every side (default {a.mask_margin:g})")
    g.add_argument("--color", type=_color, default=a.color, help="fill colour for --method solid (R,G,B or #RRGGBB)")
    g.add_argument("--blur-strength", type=float, default=a.blur_strength, help="blur radius multiplier (default 1)")
    g.add_argument("--pixel-blocks", type=int, default=a.pixel_blocks, help="mosaic blocks across a face (default 8)")
    g.add_argument("--feather", type=float, default=a.feather, help="soft mask edge, fraction of the face (default 0)")
    g = p.add_argument_group("detection and tracking")
    g.add_argument("--threshold", type=float, default=d.threshold, help=f"face score threshold (default {d.threshold})")
    g.add_argument("--det-size", type=int, default=d.det_size, help="network input long side (default: native resolution, at most 1920; live feeds: the largest that keeps up with the frame rate)")
    g.add_argument("--batch", type=int, default=d.batch, help=f"frames per detector call (default {d.batch})")
    g.add_argument("--providers", default=",".join(d.providers), help="ONNX Runtime providers, comma separated, or 'auto'")
    g.add_argument("--threads", type=int, default=d.threads, help="CPU threads per detector call (default: all cores but one, split over --detect-workers)")
    g.add_argument("--detect-workers", type=int, default=d.workers, help="detector calls run at once on consecutive frames (default: 2 for a CPU backend with 2+ cores, else 1)")
    g.add_argument(
        "--backend",
        default=d.backend,
        choices=list(BACKENDS),
        help="inference backend (default auto: TensorRT, else ONNX Runtime on a GPU, else OpenVINO, else ONNX Runtime on the CPU)",
    )
    g.add_argument(
        "--precision",
        default=d.precision,
        choices=list(PRECISIONS),
        help="network precision (default auto: fp16 on TensorRT, bf16 on OpenVINO where the CPU has it natively, else fp32)",
    )
    g.add_argument("--engine-dir", default=d.engine_dir, help="folder of TensorRT engines built by build_engines.py")
    g.add_argument("--detect-every", type=int, default=t.detect_every, help=f"run the detector every N frames (default {t.detect_every})")
    g.add_argument("--max-coast", type=int, default=t.max_coast, help=f"keep masking a lost face for N frames (default {t.max_coast})")
    g.add_argument("--no-track", action="store_true", help="mask raw detections only")
    g = p.add_argument_group("encoding")
    g.add_argument("--codec", default=io.codec, help="video encoder (default libx264; webm->vp9, gif->gif)")
    g.add_argument("--crf", type=int, default=io.crf, help=f"quality, lower is better (default {io.crf})")
    g.add_argument("--preset", default=io.preset, help=f"encoder preset (default {io.preset})")
    g.add_argument("--encoder-opt", type=_kv, action="append", default=[], metavar="KEY=VALUE", help="extra encoder option (repeatable)")
    g.add_argument("--no-audio", action="store_true", help="drop audio (default: copied bit-exactly)")
    g.add_argument("--keep-metadata", action="store_true", help="keep container/EXIF metadata (default: stripped)")
    g.add_argument("--on-error", default=io.on_error, choices=["mask-frame", "abort"], help="a frame that fails is fully masked (default) or the run stops")


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
        ),
        io=IOConfig(
            codec=ns.codec,
            crf=ns.crf,
            preset=ns.preset,
            encoder_options=tuple(ns.encoder_opt),
            audio=not ns.no_audio,
            keep_metadata=ns.keep_metadata,
            on_error=ns.on_error,
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
    return lambda: signal.signal(signal.SIGTERM, old)


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
        from .live import run_live  # noqa: PLC0415 - live deps only when needed

        return run_live(ns, config)
    from .live.options import live_flags_given

    unused = live_flags_given(ns, ns.live_actions)
    if unused:
        raise ConfigError(
            f"{', '.join(unused)} only appl{'ies' if len(unused) == 1 else 'y'} to live feeds "
            "(a network URL, /dev/video* or - as input or output)"
        )
    from .runner import default_output, process_file, write_report

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
    failures: list[tuple[Path, StreamanonError]] = []
    reports = []
    for src, dst in jobs:
        if len(jobs) > 1:
            dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            rep = process_file(src, dst, config, stages=stages, progress=not ns.quiet, report_frames=ns.report is not None)
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
        ns.report.write_text(json.dumps({"files": [r.summary(config) | {"frames_detail": r.per_frame} for r in reports]}, indent=1))
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
        print(f"streamanon: internal error: {type(exc).__name__}: {redact(str(exc))} (run with -v for details)", file=sys.stderr)
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
        print(f"default backend: {choice.config.backend} {choice.config.precision} on the {'CPU' if choice.on_cpu else 'GPU'}")
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
