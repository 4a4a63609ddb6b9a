"""Peak memory and speed: the ``streamanon`` CLI against the ``deface`` CLI, alternating.

Usage::

    python benchmarks/bench_memory.py                              # every shared clip, 3 runs each
    python benchmarks/bench_memory.py --clips ../shared/data/videos/openpose__video.avi --repeats 3
    python benchmarks/bench_memory.py --max-frames 150 --nice 10 --out bench_results/memory.json
    python benchmarks/bench_memory.py --phases CLIP --max-frames 100   # where streamanon's memory goes

Both tools run as a user runs them, at their defaults (``streamanon CLIP -o OUT``, ``deface
CLIP -o OUT``), one at a time, in an order that alternates from run to run, under ``nice``.
For each run:

* peak RSS of the tool's own process (``VmHWM``, sampled every 20 ms), and of its whole
  process tree (the sum of the RSS of the process and its children, sampled): deface
  decodes and encodes in two ``ffmpeg`` child processes (imageio-ffmpeg), streamanon in
  its own process (PyAV), so the tree is the like-for-like figure;
* end-to-end fps: frames written / wall seconds of the command (start-up and model load
  included, for both); and streamanon's processing fps from its ``--report``.

The detector-bound ceiling (``--ceiling``, on by default): the fps that streamanon's
detector alone reaches at the default settings on this machine's cores, fed decoded
frames from memory by as many concurrent callers as the pipeline uses (its detector
workers); the pipeline's processing fps over it says how close the whole pipeline comes
(goal >= 0.9). Long clips are cut to their first ``--max-frames`` frames (stream copy).
The machine's load average is printed with every row: numbers measured on a shared
machine are only comparable within one run, as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

TOOLS = ("streamanon", "deface")


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (via ``/proc/PID/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def measure(cmd: list[str], nice: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, exit status, peak RSS (MiB) of its process and of its tree."""
    t0 = time.perf_counter()
    # nice execs the command: the pid stays the tool's
    proc = subprocess.Popen(["nice", "-n", str(nice), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = {"main": 0, "tree": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            main = max(_status_kib(proc.pid, "VmHWM:"), _status_kib(proc.pid, "VmRSS:"))
            tree = _status_kib(proc.pid, "VmRSS:") + sum(_status_kib(k, "VmRSS:") for k in _children(proc.pid))
            peak["main"], peak["tree"] = max(peak["main"], main), max(peak["tree"], tree, main)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    return {
        "rc": proc.returncode,
        "seconds": time.perf_counter() - t0,
        "rss_main_mib": peak["main"] / 1024,
        "rss_tree_mib": peak["tree"] / 1024,
        "error": err.decode(errors="replace").strip().splitlines()[-1:] if proc.returncode else [],
    }


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


def run_tool(tool: str, clip: Path, tmp: Path, nice: int) -> dict[str, Any]:
    """One run of ``tool``: ``deface``, ``streamanon`` (this checkout) or ``streamanon@PATH``
    (the checkout at PATH, e.g. a baseline worktree)."""
    out = tmp / "out.mp4"
    out.unlink(missing_ok=True)
    if tool.startswith("streamanon"):
        report = tmp / "report.json"
        src = tool.partition("@")[2] or str(REPO)
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "streamanon", str(clip), "-o", str(out), "-q", "--report", str(report)]
        r = measure(cmd, nice, env)
        if r["rc"] == 0:
            rep = json.loads(report.read_text())
            rep = rep.get("summary", rep)
            r["processing_fps"] = rep.get("fps")
            r["inference"] = {k: rep.get("inference", {}).get(k) for k in ("backend", "precision", "workers")}
    else:
        r = measure(["deface", str(clip), "-o", str(out)], nice)
    if r["rc"] == 0:
        r["frames"] = count_frames(out)
        r["fps"] = r["frames"] / r["seconds"]
    return r


# -- detector-bound ceiling --------------------------------------------------------------
def ceiling_child(clip: Path, frames: int) -> dict[str, Any]:
    """In this process: the default detector alone on ``frames`` decoded frames, fed by as
    many concurrent callers as the pipeline's detector workers."""
    from concurrent.futures import ThreadPoolExecutor

    from streamanon.config import PipelineConfig
    from streamanon.pipeline import Stages

    images = [f.image for f in common.read_frames(clip, frames)]
    stages = Stages(PipelineConfig())
    stages.detector([images[0]])  # warm-up: compile
    workers = stages.detect_workers
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda im: stages.detector([im]), images))
    seconds = time.perf_counter() - t0
    return {"frames": len(images), "fps": len(images) / seconds, "workers": workers, "inference": stages.inference}


def ceiling(clip: Path, frames: int, nice: int) -> dict[str, Any]:
    cmd = ["nice", "-n", str(nice), sys.executable, __file__, "--ceiling-child", str(clip), "--max-frames", str(frames)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


# -- where the memory goes ---------------------------------------------------------------
HEAVY = ("scipy", "onnx", "onnxruntime", "openvino", "torch", "dlib", "skimage", "ray", "tensorrt")


def phases(clip: Path, frames: int) -> None:
    """In this process: peak RSS after each phase of a default run of ``clip`` (``--phases``)."""
    import importlib

    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _status_kib(os.getpid(), "VmRSS:"))
            stop.wait(0.005)

    seen: set[str] = set()

    def mark(what: str) -> None:
        rss = _status_kib(os.getpid(), "VmRSS:")
        new = [m for m in HEAVY if m in sys.modules and m not in seen]
        seen.update(new)
        imported = f"   imported: {', '.join(new)}" if new else ""
        print(f"  {what:<46} RSS {rss / 1024:5.0f} MiB  peak so far {max(peak[0], rss) / 1024:5.0f} MiB{imported}")

    threading.Thread(target=sample, daemon=True).start()
    mark("benchmarks.common (numpy, PyAV, OpenCV, core)")
    for mod in ("streamanon.pipeline", "streamanon.runner"):
        importlib.import_module(mod)
    mark("import streamanon.pipeline, streamanon.runner")
    from streamanon.config import PipelineConfig
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    stages = Stages(PipelineConfig())
    mark(f"Stages built ({stages.inference.get('backend')}, {stages.detect_workers} workers)")
    first = next(common.read_frames(clip, 1))
    stages.detector([first.image])
    mark(f"first detector call ({first.width}x{first.height}: compiled)")
    with tempfile.TemporaryDirectory(prefix="bench_memory.") as d:
        r = process_file(clip, Path(d) / "out.mp4", PipelineConfig(), stages=stages, report_frames=False)
    mark(f"process_file: {r.frames} frames")
    stop.set()
    loaded = [m for m in HEAVY if m in sys.modules]
    print(f"  heavy modules loaded: {', '.join(loaded)}; not loaded: {', '.join(m for m in HEAVY if m not in loaded)}")
    print(f"  peak RSS (VmHWM) {_status_kib(os.getpid(), 'VmHWM:') / 1024:.0f} MiB")


# -- the benchmark -----------------------------------------------------------------------
def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None and r.get("rc") == 0]
    return statistics.median(vals) if vals else None


def compile_bytecode(*checkouts: str | Path) -> None:
    """Byte-compile each checkout's ``streamanon`` package, as ``pip install`` does.

    deface runs from an installed wheel with its bytecode compiled at install; a source
    checkout (an editable install, here under ``PYTHONDONTWRITEBYTECODE=1``) would
    otherwise compile every module on every start: ~0.1 s of start-up that a user's
    install does not pay.
    """
    for checkout in checkouts:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(checkout) / "streamanon")], check=True)


def bench(
    clips: list[Path], repeats: int, max_frames: int, nice: int, with_ceiling: bool, baseline: str | None = None
) -> list[dict[str, Any]]:
    tools = (*TOOLS, f"streamanon@{baseline}") if baseline else TOOLS
    compile_bytecode(REPO, *([baseline] if baseline else []))
    rows = []
    work = common.RESULTS / "prefix"
    with tempfile.TemporaryDirectory(prefix="bench_memory.") as d:
        tmp = Path(d)
        for i, orig in enumerate(clips):
            clip = common.prefix_clip(orig, max_frames, work)
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
            load0 = os.getloadavg()[0]
            for r in range(repeats):
                order = tools if (i + r) % 2 == 0 else tools[::-1]
                for tool in order:
                    runs[tool].append(run_tool(tool, clip, tmp, nice))
            row: dict[str, Any] = {"clip": orig.name, "runs": runs, "load": [load0, os.getloadavg()[0]]}
            for tool in tools:
                for key in ("fps", "rss_main_mib", "rss_tree_mib", "processing_fps"):
                    row[f"{tool}_{key}"] = _median(runs[tool], key)
            if with_ceiling and row["streamanon_processing_fps"]:
                row["ceiling"] = ceiling(clip, max_frames or 150, nice)
            rows.append(row)
            print(format_row(row), flush=True)
            if baseline:
                b = f"streamanon@{baseline}"
                print(
                    f"{'  baseline ' + baseline:<34} {row[b + '_fps'] or 0:7.1f} {'':>7} {'':>5} | "
                    f"{row[b + '_rss_main_mib'] or 0:6.0f}                | {row[b + '_rss_tree_mib'] or 0:7.0f} "
                    f"{'':>15} | {row[b + '_processing_fps'] or 0:6.1f}",
                    flush=True,
                )
    return rows


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:5.2f}" if a and b else "    -"


def header() -> str:
    return (
        f"{'clip':<34} {'sa fps':>7} {'df fps':>7} {'x':>5} | {'sa MiB':>6} {'df MiB':>6} {'x':>5} | "
        f"{'sa tree':>7} {'df tree':>7} {'x':>5} | {'proc':>6} {'ceil':>6} {'p/c':>5} | load"
    )


def format_row(row: dict[str, Any]) -> str:
    def f(v: float | None, w: int = 7, p: int = 1) -> str:
        return f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}}"

    ceil = (row.get("ceiling") or {}).get("fps")
    proc = row.get("streamanon_processing_fps")
    sa, df = row["streamanon_fps"], row["deface_fps"]
    return (
        f"{row['clip'][:34]:<34} {f(sa)} {f(df)} {_ratio(sa, df)} | "
        f"{f(row['streamanon_rss_main_mib'], 6, 0)} {f(row['deface_rss_main_mib'], 6, 0)} "
        f"{_ratio(row['streamanon_rss_main_mib'], row['deface_rss_main_mib'])} | "
        f"{f(row['streamanon_rss_tree_mib'], 7, 0)} {f(row['deface_rss_tree_mib'], 7, 0)} "
        f"{_ratio(row['streamanon_rss_tree_mib'], row['deface_rss_tree_mib'])} | "
        f"{f(proc, 6)} {f(ceil, 6)} {_ratio(proc, ceil)} | {row['load'][0]:.1f}-{row['load'][1]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="*", type=Path, help="clips (default: every video in the shared data)")
    p.add_argument("--repeats", type=int, default=3, help="runs per tool and clip, alternating (median reported)")
    p.add_argument("--max-frames", type=int, default=300, help="cut longer clips to their first N frames (0: all)")
    p.add_argument("--nice", type=int, default=10, help="niceness of every run")
    p.add_argument("--no-ceiling", action="store_true", help="skip the detector-bound ceiling")
    p.add_argument("--baseline", metavar="CHECKOUT", help="also run streamanon from this checkout (e.g. ../main)")
    p.add_argument("--out", type=Path, default=common.RESULTS / "bench_memory.json")
    p.add_argument("--phases", type=Path, metavar="CLIP", help="only: peak RSS after each phase of a run of CLIP")
    p.add_argument("--ceiling-child", type=Path, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.phases:
        phases(common.prefix_clip(ns.phases, ns.max_frames, common.RESULTS / "prefix"), ns.max_frames)
        return 0
    if ns.ceiling_child:
        print(json.dumps(ceiling_child(ns.ceiling_child, ns.max_frames or 150)))
        return 0
    clips = ns.clips or common.default_clips()
    meta = {"cores": common.cpu_threads(), "max_frames": ns.max_frames, "repeats": ns.repeats, "nice": ns.nice}
    meta["load_avg_start"] = list(os.getloadavg())
    print(f"bench_memory: {len(clips)} clips, {ns.repeats} runs each, {meta['cores']} cores, nice {ns.nice}")
    print("sa/df fps: end to end (start-up included); MiB: peak RSS of the tool's process; tree: with its children;")
    print("proc: streamanon's processing fps (--report); ceil: its detector alone; p/c: proc / ceil; load: 1-min avg")
    print(header(), flush=True)
    rows = bench(clips, ns.repeats, ns.max_frames, ns.nice, not ns.no_ceiling, ns.baseline)
    meta["load_avg_end"] = list(os.getloadavg())
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps({"meta": meta, "clips": rows}, indent=1, default=str))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
