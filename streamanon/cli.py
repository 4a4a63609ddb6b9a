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
from ._memory import MemoryTrimmer
from .anonymize.review import review_from_args
from .audit import RunStats
from .backends.onnxruntime import available_providers
from .backends.openvino import openvino_status
from .backends.registry import load_registry, resolve_model
from .backends.tensorrt import tensorrt_status
from .cliutil import ArgParser, setup_logging
from .config import DetectConfig, PipelineConfig
from .detect.centerface import resolve_backend
from .errors import EXIT_CODES, ConfigError, SinkError, SourceOpenError, StreamanonError
from .io import is_image_path, is_live, is_video_path, redact
from .options import (
    BATCH,
    FILE,
    FOLDER,
    LIVE,
    RUN,
    add_arguments,
    check_applies,
    config_from_values,
    verify_every,
)
from .options import parse_time as parse_time  # --start/--duration (re-exported)
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


#: The argument groups of the pipeline's own options (run, batch, eval, demo).
PIPELINE_GROUPS = ("anonymisation", "selective anonymisation", "detection and tracking", "encoding")


def add_pipeline_options(p: argparse.ArgumentParser, mode: str = FILE) -> None:
    """The pipeline's options (``PipelineConfig``) that apply to ``mode``, from ``streamanon.options``."""
    add_arguments(p, {mode}, groups=PIPELINE_GROUPS)


def add_verify_options(p: argparse.ArgumentParser, mode: str = BATCH) -> None:
    """``--verify`` / ``--verify-every N`` (run, batch; see streamanon/verify.py)."""
    add_arguments(p, {mode}, groups=["verification of the output"])


def config_from_args(ns: argparse.Namespace) -> PipelineConfig:
    """The one place where CLI options become a ``PipelineConfig`` (``options.config_from_values``)."""
    return config_from_values(vars(ns))


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
    add_arguments(p, RUN, flags=["--start"])
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    p.add_argument("--version", action="version", version=f"streamanon {__version__}")
    add_arguments(p, RUN, flags=["--review"])
    add_arguments(p, RUN, groups=[*PIPELINE_GROUPS, "verification of the output", "live feeds"])
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


def run_mode(inputs: Sequence[str], output: str | None) -> str:
    """``live`` when an input or the output is a live feed, ``folder`` for several inputs or a
    folder, else ``file`` (the mode ``streamanon.options`` checks the options given against)."""
    if any(is_live(i) for i in inputs) or bool(output and is_live(output)):
        return LIVE
    return FOLDER if len(inputs) > 1 or Path(inputs[0]).is_dir() else FILE


def check_options(ns: argparse.Namespace, given: set[str], mode: str) -> None:
    """ConfigError naming the options given that do not apply to ``mode`` or to ``--method``."""
    check_applies({dest: getattr(ns, dest) for dest in given if hasattr(ns, dest)}, mode, ns.method)


def check_report_path(path: Path) -> None:
    """ConfigError unless ``--report`` can be written (checked before any frame is processed)."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--report {path} is a folder: give a file name")
    if not parent.is_dir():
        raise ConfigError(f"--report {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--report {path} is not writable")


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
    """The folder/many-input report's totals (``seconds``: wall clock of the whole call);
    ``stats`` is the files' ``RunStats`` summed, in the layout of every report."""
    total = RunStats.total((r.stats for r in reports), seconds)
    return {
        "files": jobs,
        "files_done": sum(1 for r in reports if r.error is None and not r.interrupted),
        "files_failed": failed,
        "files_interrupted": sum(1 for r in reports if r.interrupted),
        "files_not_processed": jobs - len(reports),
        "files_skipped": len(skipped),
        "skipped": [str(p) for p in skipped],
        "frames": total.frames,
        "frames_written": total.frames_written,
        "frames_lost": sum(r.frames_lost for r in reports),
        "tracks": total.tracks,
        "detections": total.detections,
        "faces": total.faces,
        "seconds": round(seconds, 3),
        "fps": total.fps,
        "stats": total.to_dict(),
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
    inputs = [ns.input, *ns.more_inputs]
    mode = run_mode(inputs, ns.output)
    check_options(ns, given, mode)
    config = config_from_args(ns)
    review = review_from_args(ns)  # --review: refused for live, warns loudly, *_review output
    if ns.report is not None:
        check_report_path(ns.report)
    if mode == LIVE and len(inputs) > 1:
        raise ConfigError("several inputs are for files and folders; run one live feed per call (or 'streams')")
    if mode == LIVE:
        from .live import run_live  # the live endpoints' modules (http, ssl) only for live input

        return run_live(ns, config)
    if ns.duration is not None and ns.duration <= 0:
        raise ConfigError("--duration must be > 0 seconds")
    jobs, skipped, many = _plan([Path(i) for i in inputs], ns.output)
    if not many and (ns.start or ns.duration is not None) and is_image_path(jobs[0][0]):
        raise ConfigError("--start/--duration apply to videos, not a still image")
    for path in skipped:
        log.info("skipped (not an image or video file): %s", path)
    every = verify_every(ns.verify, ns.verify_every)
    verifier = verifier_from_args(every > 0, every or None)  # before any work: exit 9 without dlib
    stages = Stages(config, anonymizer=review)  # models load once for every file
    pool = None
    if stages.anonymizer_factory.pooled and len(jobs) > 1:
        # k-same over a folder: the pool is the folder's faces (a first pass over every file)
        pool = collect_pool([src for src, _ in jobs], config, stages, span=(ns.start or 0.0, ns.duration))
    run = _FileRun(ns, config, stages, pool, verifier, many)
    for src, dst in jobs:
        if not run.one(src, dst):
            break
    return run.finish(len(jobs), skipped, time.perf_counter() - t0)


class _FileRun:
    """The files of one ``streamanon`` call, one after another: their reports, failures, and
    the call's exit status (the first interruption ends the call)."""

    def __init__(
        self, ns: argparse.Namespace, config: PipelineConfig, stages: Stages, pool: Any, verifier: Any, many: bool
    ) -> None:
        self.ns, self.config, self.stages, self.pool, self.verifier, self.many = (
            ns,
            config,
            stages,
            pool,
            verifier,
            many,
        )
        self.failures: list[tuple[Path, StreamanonError]] = []
        self.reports: list[RunReport] = []
        self.interrupted: RunReport | None = None

    def one(self, src: Path, dst: Path) -> bool:
        """Process one file; False when the call was interrupted (no file after it)."""
        ns = self.ns
        if self.many:
            dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            rep: RunReport | None = process_file(
                src,
                dst,
                self.config,
                stages=self.stages,
                progress=not ns.quiet,
                report_frames=ns.report is not None,
                pool=self.pool,
                start=ns.start or 0.0,
                duration=ns.duration,
                verifier=self.verifier,
            )
        except (Interrupted, KeyboardInterrupt) as exc:
            self.interrupted = getattr(exc, "report", None) or _failed_report(src, dst, exc)
            self.interrupted.interrupted = True
            self.interrupted.error = "interrupted"
            self.reports.append(self.interrupted)
            return False
        except StreamanonError as exc:
            rep = getattr(exc, "report", None)
            if not self.many:
                write_report(ns.report, rep, self.config)
                if rep is not None and rep.verify:
                    print(f"{src}: {verify_line(rep.verify)}", file=sys.stderr)
                raise
            log.error("%s: %s", src, exc)
            self.failures.append((src, exc))
            if rep is None:
                rep = _failed_report(src, dst, exc)
        if rep is not None:
            self.reports.append(rep)
            if not ns.quiet and rep.frames:
                print(_summary_line(rep), file=sys.stderr)
            if not ns.quiet and rep.verify:
                print(f"{src}: {verify_line(rep.verify)}", file=sys.stderr)
        return True

    def finish(self, jobs: int, skipped: list[Path], seconds: float) -> int:
        """Write the report, print the totals; the call's exit status."""
        ns, reports = self.ns, self.reports
        totals = _totals(reports, jobs, len(self.failures), skipped, seconds)
        if not self.many:
            write_report(ns.report, reports[0] if reports else None, self.config)
        elif ns.report:
            doc = {"files": [json.loads(r.to_json(self.config)) for r in reports], "totals": totals}
            try:
                ns.report.write_text(json.dumps(doc, indent=1))
            except OSError as exc:
                raise SinkError(f"cannot write report {ns.report}: {exc.strerror}") from exc
        if self.many and not ns.quiet:
            print(_totals_line(totals), file=sys.stderr)
        if self.interrupted is not None:
            rep = self.interrupted
            done = (
                f"{rep.frames_written} frames written to {rep.output} "
                f"(incomplete: {rep.frames_lost} frames not processed)"
                if rep.frames_written
                else "no frame written"
            )
            print(f"streamanon: interrupted: {done}", file=sys.stderr)
            return 130
        if self.failures:
            print(f"streamanon: {len(self.failures)} of {jobs} files failed", file=sys.stderr)
            return max(exc.exit_code for _, exc in self.failures)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    restore = _sigterm_as_interrupt()
    try:
        with MemoryTrimmer():  # freed frames go back to the system as the run goes (_memory)
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
