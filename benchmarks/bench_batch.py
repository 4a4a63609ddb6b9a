"""Batch throughput: seconds of video anonymised per wall-clock second, by engine and jobs.

Builds an archive from the shared data's ASL gesture clips (640x480, ~50-110 frames each)
in a temp folder, then runs ``streamanon batch`` on it (fresh output each time) with
local workers at ``--jobs 1`` and ``--jobs 2`` (more with ``--jobs``) and with Ray in
local mode. Wall time includes worker start-up and model loading: that is what a user
waits for. Scaling efficiency = throughput(N) / (N x throughput(jobs=1)); utilisation =
summed per-file processing time / (jobs x wall), i.e. how busy the workers were; the
start+stop time of a bare local Ray instance is measured separately.

    python benchmarks/bench_batch.py [--data DIR] [--clips N] [--jobs 1 2] [--no-ray] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streamanon.batch import BatchOptions, run_batch
from streamanon.batch.driver import cpu_count, threads_per_job
from streamanon.batch.manifest import Manifest
from streamanon.runner import package_versions

DEFAULT_DATA = Path(os.environ.get("STREAMANON_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def build_archive(data: Path, root: Path, clips: int) -> list[Path]:
    """Copy the first ``clips`` ASL clips (sorted) into ``root``."""
    src = sorted((data / "videos" / "intel_asl_gestures").glob("*.mkv"))[:clips]
    if not src:
        raise SystemExit(f"no clips under {data}/videos/intel_asl_gestures (set --data or STREAMANON_DATA)")
    root.mkdir(parents=True, exist_ok=True)
    for p in src:
        shutil.copyfile(p, root / p.name)
    return src


def run_one(archive: Path, out: Path, engine: str, jobs: int) -> dict[str, Any]:
    """One fresh batch run; returns its measurements."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = run_batch(BatchOptions(archive, out, engine=engine, jobs=jobs, progress=False))
    wall = time.perf_counter() - t0
    if res.failed or res.done == 0:
        raise SystemExit(f"{engine} jobs={jobs}: {res.failed} files failed")
    with Manifest(out, readonly=True) as m:
        busy = float(m.totals()["seconds"])  # per-file processing time, summed over workers
    return {
        "engine": engine,
        "jobs": jobs,
        "threads_per_job": threads_per_job(jobs),
        "files": res.done,
        "frames": res.frames,
        "video_s": round(res.media_seconds, 3),
        "wall_s": round(wall, 3),
        "video_s_per_wall_s": round(res.media_seconds / wall, 4),
        "frames_per_s": round(res.frames / wall, 2),
        "busy_s": round(busy, 3),
        "worker_utilisation": round(busy / (jobs * wall), 3),
    }


def ray_start_stop(cpus: int) -> float:
    """Seconds to start and stop a local Ray instance (the fixed cost of ``--engine ray``)."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    return round(time.perf_counter() - t0, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--clips", type=int, default=10, help="ASL clips in the archive (max 10)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="local --jobs values (default 1 2)")
    ap.add_argument("--ray-jobs", type=int, default=2, help="Ray local-mode CPUs/tasks in flight (default 2)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; configurations interleave, the median wall counts")
    ap.add_argument("--json", type=Path, default=Path("bench_results/bench_batch.json"))
    ns = ap.parse_args(argv)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        archive, out = Path(tmp) / "archive", Path(tmp) / "out"
        build_archive(ns.data, archive, ns.clips)
        plan = [("local", j) for j in ns.jobs]
        if not ns.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray not installed: skipping the Ray run (pip install 'streamanon[cluster]')", file=sys.stderr)
            else:
                plan.append(("ray", ns.ray_jobs))
        load_before = os.getloadavg()[0]
        rounds: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in plan}
        for i in range(max(1, ns.repeat)):  # interleaved, so that background load hits every configuration
            for engine, jobs in plan:
                print(f"round {i + 1}: {engine} jobs={jobs} ...", file=sys.stderr, flush=True)
                rounds[(engine, jobs)].append(run_one(archive, out, engine, jobs))
        for runs in rounds.values():
            runs.sort(key=lambda r: r["wall_s"])
            median = dict(runs[len(runs) // 2])
            median["wall_s_all"] = [r["wall_s"] for r in runs]
            results.append(median)
        ray_overhead = ray_start_stop(ns.ray_jobs) if any(r["engine"] == "ray" for r in results) else None
        load_after = os.getloadavg()[0]

    base = next((r for r in results if r["engine"] == "local" and r["jobs"] == 1), None)
    for r in results:
        r["scaling_efficiency"] = (
            round(r["video_s_per_wall_s"] / (r["jobs"] * base["video_s_per_wall_s"]), 3) if base else None
        )

    header = (
        f"{'engine':<7}{'jobs':>5}{'thr/job':>8}{'files':>6}{'frames':>7}{'video s':>9}{'wall s':>8}"
        f"{'video s/s':>10}{'fps':>7}{'eff.':>7}{'util.':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        eff = f"{r['scaling_efficiency']:.2f}" if r["scaling_efficiency"] is not None else "-"
        print(
            f"{r['engine']:<7}{r['jobs']:>5}{r['threads_per_job']:>8}{r['files']:>6}{r['frames']:>7}{r['video_s']:>9.2f}"
            f"{r['wall_s']:>8.2f}{r['video_s_per_wall_s']:>10.3f}{r['frames_per_s']:>7.1f}{eff:>7}"
            f"{r['worker_utilisation']:>7.2f}"
        )
    if ray_overhead is not None:
        print(f"Ray local instance start+stop alone: {ray_overhead:.1f} s (included in the ray wall time)")
    print(f"1-min load average: {load_before:.1f} before, {load_after:.1f} after (cores: {cpu_count()})")
    print("eff. = throughput / (jobs x throughput at jobs=1); util. = per-file busy time / (jobs x wall)")
    report = {
        "benchmark": "batch throughput",
        "machine": {"cores": cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
        "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "repeat": ns.repeat,
        "versions": package_versions(),
        "clips": ns.clips,
        "results": results,
        "ray_start_stop_s": ray_overhead,
    }
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {ns.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
