"""``streamanon batch``: anonymise an archive folder, resumably, in parallel or on Ray.

::

    streamanon batch ARCHIVE_DIR -o OUT_DIR [--jobs N] [--engine local|ray] [--ray-address ADDR]
                     [--retry-failed] [-q] [-v] [anonymisation options of `streamanon`]
    streamanon batch --status OUT_DIR [--json] [-v]

Exit codes: 0 when no file of the manifest is failed, otherwise the largest exit code of
the failures (see ``streamanon.errors.EXIT_CODES``); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..cli import add_pipeline_options, add_verify_options, check_options, config_from_args, given_options
from ..cliutil import setup_logging as setup
from ..errors import ConfigError
from ..options import BATCH, verify_every
from ..verify import verify_every_from_args
from .driver import BatchOptions, BatchResult, run_batch
from .manifest import MANIFEST_NAME, Manifest, Row

log = logging.getLogger(__name__)

MAX_LISTED = 50


class BatchArgParser(argparse.ArgumentParser):
    """argparse that raises ``ConfigError`` instead of exiting (one-line errors)."""

    def error(self, message: str) -> Any:
        raise ConfigError(message)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The ``streamanon batch`` parser (pipeline options shared with ``streamanon``)."""
    p = BatchArgParser(
        prog="streamanon batch",
        description="Anonymise every image and video below ARCHIVE_DIR into OUT_DIR (same tree). "
        "Resumable: a SQLite manifest in OUT_DIR records each file; re-running skips finished files.",
    )
    p.add_argument("archive", nargs="?", type=Path, help="folder to anonymise (walked recursively)")
    p.add_argument("-o", "--output", type=Path, help="output folder (mirrors the archive; must not be the archive)")
    p.add_argument(
        "--status", type=Path, metavar="OUT_DIR", help="print the manifest summary and failures of OUT_DIR, then exit"
    )
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.add_argument("-j", "--jobs", type=_positive, help="parallel pipelines (default: half the CPU cores, at least 1)")
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local worker processes (default) or Ray"
    )
    p.add_argument(
        "--ray-address",
        help="existing Ray cluster, e.g. auto or ray://head:10001 (default: a local Ray instance); "
        "ARCHIVE_DIR and OUT_DIR must be on shared storage at the same path on every node",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="also retry files that failed on a corrupt or unreadable input"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging; list skipped files in --status")
    add_pipeline_options(p, BATCH)
    add_verify_options(p, BATCH)
    return p


def _setup_logging(verbose: bool) -> None:
    setup(verbose)


def main(argv: list[str]) -> int:
    """Entry point of ``streamanon batch``; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    _setup_logging(ns.verbose)
    if ns.status is not None:
        if ns.archive is not None or ns.output is not None:
            raise ConfigError("--status takes only OUT_DIR")
        return status_command(ns.status, as_json=ns.json, verbose=ns.verbose)
    if ns.archive is None or ns.output is None:
        raise ConfigError("usage: streamanon batch ARCHIVE_DIR -o OUT_DIR (or --status OUT_DIR)")
    check_options(ns, given_options(parser, argv), BATCH)  # --k with --method blur: an error, not ignored
    if ns.ray_address and ns.engine != "ray":
        raise ConfigError("--ray-address needs --engine ray")
    every = verify_every(ns.verify, ns.verify_every)
    # exit 9 here, not per file, without dlib; the models load per worker
    every = verify_every_from_args(every > 0, every or None)
    opts = BatchOptions(
        archive=ns.archive,
        out_dir=ns.output,
        config=config_from_args(ns),
        engine=ns.engine,
        jobs=ns.jobs,
        ray_address=ns.ray_address,
        retry_failed=ns.retry_failed,
        progress=not ns.quiet,
        verbose=ns.verbose,
        verify_every=every,
    )
    result = run_batch(opts)
    print(format_result(result))
    if result.failures:
        print(format_failures(result.failures))
    return result.exit_code


def format_result(r: BatchResult) -> str:
    """Two lines: what this run did, then the state of the manifest."""
    rate = f", {r.media_seconds / r.seconds:.2f} s of video per s" if r.seconds > 0 and r.media_seconds else ""
    extra = []
    if r.interrupted:
        extra.append(f"{len(r.interrupted)} redone after an interruption")
    if r.partials_removed:
        extra.append(f"{r.partials_removed} partial files removed")
    tail = f" ({'; '.join(extra)})" if extra else ""
    c = r.counts
    return (
        f"batch run {r.run_id}: processed {r.processed} files ({r.done} done, {r.failed} failed), "
        f"{r.refused} newly unprocessable, {r.skipped} newly skipped, {r.up_to_date} up to date; "
        f"{r.frames} frames in {r.seconds:.1f} s{rate}{tail}\n"
        f"manifest: {sum(c.values())} files: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
        f"{c.get('skipped', 0)} skipped, {c.get('pending', 0)} pending, {c.get('running', 0)} running"
    )


def format_failures(rows: list[Row]) -> str:
    lines = [f"failed ({len(rows)}):"]
    for row in rows[:MAX_LISTED]:
        lines.append(f"  {row.path}: {row.error}")
    if len(rows) > MAX_LISTED:
        lines.append(f"  ... and {len(rows) - MAX_LISTED} more (streamanon batch --status OUT_DIR --json)")
    return "\n".join(lines)


def status_command(out_dir: Path, *, as_json: bool = False, verbose: bool = False) -> int:
    """Print the manifest of ``out_dir``; exit code 1 when any file is failed."""
    with Manifest(out_dir, readonly=True) as m:
        counts, totals, runs = m.counts(), m.totals(), m.runs()
        failures, skipped = m.with_status("failed"), m.with_status("skipped")
        unfinished = m.with_status("pending") + m.with_status("running")
    if as_json:
        print(
            json.dumps(
                {
                    "manifest": str(Path(out_dir) / MANIFEST_NAME),
                    "counts": counts,
                    "totals": totals,
                    "last_run": vars(runs[-1]) if runs else None,
                    "failed": [{"path": r.path, "error": r.error, "error_type": r.error_type} for r in failures],
                    "skipped": [{"path": r.path, "reason": r.error} for r in skipped],
                    "unfinished": [{"path": r.path, "status": r.status} for r in unfinished],
                },
                indent=1,
            )
        )
        return 1 if failures else 0
    print(f"batch manifest of {out_dir}")
    if runs:
        last = runs[-1]
        print(
            f"last run {last.id}: started {last.started_at}, {last.outcome or 'still running or killed'}, "
            f"engine {last.engine}, jobs {last.jobs}, settings {last.settings_hash}, archive {last.archive}"
        )
    print(
        f"files: {sum(counts.values())}: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['skipped']} skipped, {counts['pending']} pending, {counts['running']} running"
    )
    print(
        f"done: {totals['frames']} frames, {totals['faces']} faces, {totals['media_seconds']:.1f} s of video, "
        f"{totals['seconds']:.1f} s of processing"
    )
    if failures:
        print(format_failures(failures))
    if skipped:
        reasons: dict[str, int] = {}
        for r in skipped:
            key = (r.error or "").split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        print(f"skipped ({len(skipped)}): " + "; ".join(f"{n} {k}" for k, n in sorted(reasons.items())))
        if verbose:
            for r in skipped:
                print(f"  {r.path}: {r.error}")
    if unfinished:
        print(f"unfinished ({len(unfinished)}): run the batch again to finish them")
    sys.stdout.flush()
    return 1 if failures else 0
