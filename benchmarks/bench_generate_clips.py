"""``--method generate`` on every shared clip, next to ``solid``: does it run, and how fast.

For every video under ``$STREAMANON_DATA/videos`` (subfolders included) and the YouTube
Faces ``.avi`` sequences under ``video_face_gt/``, the first ``--frames`` frames (a stream
copy, ``common.prefix_clip``) go through the product (``runner.process_file``, CPU
defaults) once with ``solid`` and once with ``generate``. Per clip and method it records
whether the run finished (``ok``; otherwise the error's one line), frames, faces, the
faces ``generate`` served itself and those it handed to its fallback (by reason), frames
the pipeline masked (``frames_failed``), end-to-end fps, and the anonymise stage's
milliseconds per face. Outputs are written to a temporary folder and deleted.

    python benchmarks/bench_generate_clips.py [--frames 60] [--json FILE] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, VIDEO_SUFFIXES, default_clips, prefix_clip

from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.errors import StreamanonError


def all_clips(data_dir: Path = DATA) -> list[Path]:
    """``videos/`` (every clip) and the video files of ``video_face_gt/``."""
    gt = data_dir / "video_face_gt"
    extra = sorted(p for p in gt.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    return default_clips(data_dir) + extra


def run_one(clip: Path, method: str, workdir: Path, stages_cache: dict[str, Any]) -> dict[str, Any]:
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    cfg = PipelineConfig(anonymize=AnonymizeConfig(method=method))
    if method not in stages_cache:
        stages_cache[method] = Stages(cfg)
    out = workdir / f"{clip.stem}.{method}.mp4"
    t0 = time.perf_counter()
    try:
        rep = process_file(clip, out, cfg, stages=stages_cache[method], report_frames=False)
    except StreamanonError as exc:
        partial = getattr(exc, "report", None)
        return {
            "ok": False,
            "error": str(exc).splitlines()[0][:200],
            "frames": getattr(partial, "frames", None),
            "frames_failed": getattr(partial, "frames_failed", None),
            "seconds": time.perf_counter() - t0,
        }
    finally:
        out.unlink(missing_ok=True)
    anon = rep.anonymizer or {}
    served = anon.get("faces") or {}
    row: dict[str, Any] = {
        "ok": rep.frames_failed == 0,
        "frames": rep.frames,
        "frames_failed": rep.frames_failed,
        "faces": rep.faces,
        "fps": round(rep.fps, 2),
        "anonymize_ms_per_face": round(1000 * rep.stage_seconds.get("anonymize", 0.0) / rep.faces, 2)
        if rep.faces
        else None,
        "served": served,
    }
    if method == "generate":
        # "generate-carried": generated at landmarks carried from an earlier frame of the track
        row["generated"] = int(sum(v for k, v in served.items() if k.startswith("generate")))
        row["fallback"] = int(sum(v for k, v in served.items() if not k.startswith("generate")))
        row["fallback_reasons"] = anon.get("fallback_reasons", {})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60, help="first N frames of each clip (default 60)")
    p.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    p.add_argument("--markdown", action="store_true", help="print a README table")
    ns = p.parse_args(argv)
    clips = all_clips(ns.data)
    if not clips:
        print(f"no clips under {ns.data}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        for clip in clips:
            src = prefix_clip(clip, ns.frames, work)
            name = str(clip.relative_to(ns.data))
            res = {m: run_one(src, m, work, stages) for m in ("solid", "generate")}
            rows.append({"clip": name, **{f"{m}": r for m, r in res.items()}})
            g, s = res["generate"], res["solid"]
            print(
                f"{name}: generate ok={g['ok']} faces={g.get('faces')} fallback={g.get('fallback')}"
                f" fps={g.get('fps')} (solid {s.get('fps')}) ms/face={g.get('anonymize_ms_per_face')}"
                + (f" error: {g['error']}" if "error" in g else ""),
                flush=True,
            )
            if src != clip:
                src.unlink(missing_ok=True)
    meta = {
        "frames": ns.frames,
        "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    if ns.json:
        ns.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if ns.markdown:
        print()
        print(
            "| clip | frames | faces | generated | fallback (reasons) | masked frames"
            " | fps generate | fps solid | ms/face |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            g, s = r["generate"], r["solid"]
            if not g["ok"] and "error" in g:
                print(f"| {r['clip']} | {g.get('frames')} | failed: {g['error']} | | | | | {s.get('fps')} | |")
                continue
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(g.get("fallback_reasons", {}).items()))
            print(
                f"| {r['clip']} | {g['frames']} | {g['faces']} | {g['generated']} | {g['fallback']}"
                f"{f' ({reasons})' if reasons else ''} | {g['frames_failed']} | {g['fps']} | {s['fps']}"
                f" | {g['anonymize_ms_per_face'] if g['anonymize_ms_per_face'] is not None else '-'} |"
            )
    failed = [r["clip"] for r in rows if not r["generate"]["ok"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} clips ok with generate" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
