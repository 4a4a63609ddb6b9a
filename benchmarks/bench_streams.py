"""Many feeds: ``streamanon streams`` (one process, one shared detector) vs separate processes.

Usage::

    python benchmarks/bench_streams.py                         # 1, 2 and 4 feeds of 720p25
    python benchmarks/bench_streams.py --feeds 1 2 4 8 --sizes 720 1080 --seconds 20 --out bench_results/streams.json
    python benchmarks/bench_streams.py --feeds 2 4 --modes streams:ovasync=0 streams:ovasync=1   # OpenVINO calls

Needs the GStreamer RTSP server of the live tests (``.ci/install-live.sh``).

The source is a real clip with people (``openpose__video``, 1280x720; scaled to 1920x1080
for ``--sizes 1080``) re-encoded once at 25 fps (H.264, a keyframe a second, cached in
bench_results/) and served by the loopback
GStreamer RTSP server's ``/file`` mount, which streams it in real time to every client
with no encoding of its own. For N feeds, N sessions of that mount are anonymised

* by one ``streamanon streams CONFIG.toml`` process with N ``[[stream]]`` entries (mode
  ``streams``; ``streams:ovasync=0|1`` forces OpenVINO's calls serialised or concurrent,
  ``backends.openvino.CONCURRENT_CALLS``, instead of the product's default), and
* by N ``streamanon rtsp://... -o ...`` processes (mode ``separate``),

each feed writing an MPEG-TS file (the same encoder work as a network push), with the same
settings in both (``--det-size``, default 640: what live mode's own fit picks for a
720p25 feed here, so that both run the same network size). After ``--warmup`` seconds the
Prometheus counters are read twice, ``--seconds`` apart:

* total fps: processed frames written per second, all feeds;
* drop rate per feed: frames dropped / frames decoded (latest frame wins);
* added latency: decode-to-write time inside streamanon (the ``latency_s`` of each feed's
  report, over its whole run): the median of the feeds' p50 and the worst feed's p95;
* memory per feed: resident memory of the streamanon process(es) at the end / N.

The server, the N decoders and encoders and the detector all share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "live"))
from live_helpers import GstServer, free_port, gst_missing  # noqa: E402

DATA = Path(os.environ.get("STREAMANON_DATA", REPO / ".." / "shared" / "data")).resolve()
CLIP = "videos/openpose__video.avi"
SIZES = {720: (1280, 720), 1080: (1920, 1080)}
FPS = 25
CACHE = REPO / "bench_results"


def source_clip(seconds: float, height: int = 720) -> Path:
    """The clip at ``height``p25 (``SIZES``), looped to ``seconds`` (cached)."""
    import av
    import cv2
    import numpy as np

    size = SIZES[height]
    frames = round(seconds * FPS)
    dst = CACHE / f"streams_{height}p25_{frames}.mp4"
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(DATA / CLIP)) as c:
        images = [
            np.asarray(cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_LINEAR), np.uint8)
            for f in c.decode(video=0)
        ]
    tmp = dst.with_suffix(".partial.mp4")
    with av.open(str(tmp), "w") as out:
        opts = {"preset": "ultrafast", "crf": "23", "g": str(FPS), "bf": "0"}
        s = out.add_stream("libx264", rate=FPS, options=opts)
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        for n in range(frames):
            vf = av.VideoFrame.from_ndarray(images[n % len(images)], format="rgb24")
            vf.pts, vf.time_base = n, Fraction(1, FPS)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    tmp.rename(dst)
    return dst


def _scrape(port: int) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith("streamanon_live_") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        stream = ""
        if "{" in name:
            name, labels = name.split("{", 1)
            if 'stream="' not in labels:
                continue  # histogram buckets
            stream = labels.split('stream="', 1)[1].split('"', 1)[0]
        out[(name, stream)] = float(value)
    return out


def _per_feed(m: dict[tuple[str, str], float], name: str) -> dict[str, float]:
    """stream -> value of metric ``name`` ("" for a single-stream process: no label)."""
    return {s: v for (n, s), v in m.items() if n == name}


def _rss_mib(pids: list[int]) -> float:
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _wait_all_writing(ports: list[int], feeds: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = sum(
                sum(1 for v in _per_feed(_scrape(p), "streamanon_live_frames_out_total").values() if v > 0)
                for p in ports
            )
            if got >= feeds:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not every feed wrote a frame within {timeout} s")


def run(mode: str, feeds: int, url: str, det_size: int, warmup: float, seconds: float, tmp: Path) -> dict[str, Any]:
    """One configuration; returns its measurements."""
    common = ["--det-size", str(det_size), "--read-timeout", "5"]
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    reports: list[Path] = []
    if mode.startswith("streams"):
        port = free_port()
        ports.append(port)
        cfg = tmp / "streams.toml"
        lines = [
            f"metrics_port = {port}",
            f"det_size = {det_size}",
            f'report_dir = "{tmp / "reports"}"',
            "[defaults]",
            "read_timeout = 5",
        ]
        for i in range(feeds):
            lines += ["[[stream]]", f'name = "f{i}"', f'input = "{url}"', f'output = "{tmp / f"f{i}.ts"}"']
            reports.append(tmp / "reports" / f"f{i}.json")
        cfg.write_text("\n".join(lines) + "\n")
        knob = mode.partition(":ovasync=")[2]
        # the product's default, or OpenVINO's calls forced serialised (0) / concurrent (1)
        code = "import sys; from streamanon.cli import main; "
        if knob:
            code += f"import streamanon.backends.openvino as ov; ov.CONCURRENT_CALLS = {knob == '1'}; "
        code += "sys.exit(main(sys.argv[1:]))"
        procs.append(subprocess.Popen([sys.executable, "-c", code, "streams", str(cfg), "-q"], stderr=subprocess.PIPE))
    else:
        for i in range(feeds):
            port = free_port()
            ports.append(port)
            reports.append(tmp / f"s{i}.json")
            args = [url, "-o", str(tmp / f"s{i}.ts"), "--metrics-port", str(port), "--report", str(reports[-1]), "-q"]
            procs.append(subprocess.Popen([sys.executable, "-m", "streamanon", *args, *common], stderr=subprocess.PIPE))
    try:
        _wait_all_writing(ports, feeds, 120)
        time.sleep(warmup)
        m0 = [_scrape(p) for p in ports]
        t0 = time.monotonic()
        time.sleep(seconds)
        m1 = [_scrape(p) for p in ports]
        measured = time.monotonic() - t0
        rss = _rss_mib([p.pid for p in procs])
    finally:
        errors = []
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode not in (0, 130, -15):
                errors.append(err.decode(errors="replace")[-500:])
    out_frames = in_frames = 0.0
    drops = []
    for a, b in zip(m0, m1, strict=True):
        fo0, fo1 = _per_feed(a, "streamanon_live_frames_out_total"), _per_feed(b, "streamanon_live_frames_out_total")
        fi0, fi1 = _per_feed(a, "streamanon_live_frames_in_total"), _per_feed(b, "streamanon_live_frames_in_total")
        fd0, fd1 = (
            _per_feed(a, "streamanon_live_frames_dropped_total"),
            _per_feed(b, "streamanon_live_frames_dropped_total"),
        )
        for s in fo1:
            out_frames += fo1[s] - fo0.get(s, 0)
            got = fi1.get(s, 0) - fi0.get(s, 0)
            in_frames += got
            drops.append((fd1.get(s, 0) - fd0.get(s, 0)) / got if got else 1.0)
    p50s, p95s, det = [], [], None
    for r in reports:
        try:
            summary = json.loads(r.read_text())["summary"]
        except (OSError, ValueError, KeyError):
            continue
        lat = summary["metrics"].get("latency_s", {})
        if lat.get("p50") is not None:
            p50s.append(lat["p50"])
            p95s.append(lat["p95"])
        det = (
            det
            or summary["live_options"].get("detection")
            or summary["live_options"].get("inference", {}).get("detection")
        )
    return {
        "mode": mode,
        "feeds": feeds,
        "total_fps": round(out_frames / measured, 2),
        "input_fps": round(in_frames / measured, 2),
        "drop_rate_per_feed": [round(d, 3) for d in drops],
        "drop_rate_mean": round(statistics.mean(drops), 3) if drops else None,
        "latency_p50_ms": round(1000 * statistics.median(p50s), 1) if p50s else None,
        "latency_p95_ms_worst": round(1000 * max(p95s), 1) if p95s else None,
        "rss_mib_total": round(rss, 1),
        "rss_mib_per_feed": round(rss / feeds, 1),
        "reports": len(p50s),
        "errors": errors,
        "detection": det,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument(
        "--modes",
        nargs="+",
        default=["streams", "separate"],
        choices=["streams", "separate", "streams:ovasync=0", "streams:ovasync=1"],
    )
    p.add_argument("--sizes", nargs="+", type=int, default=[720], choices=sorted(SIZES), help="feed heights")
    p.add_argument("--det-size", type=int, default=640, help="network long side in both modes (default 640)")
    p.add_argument("--warmup", type=float, default=6.0)
    p.add_argument("--seconds", type=float, default=12.0, help="measured seconds per run (default 12)")
    p.add_argument("--out", type=Path, default=REPO / "bench_results" / "streams.json")
    args = p.parse_args(argv)
    reason = gst_missing()
    if reason:
        print(f"bench_streams: {reason}", file=sys.stderr)
        return 2
    rows = []
    for height in args.sizes:
        # startup (8 separate processes load 8 models) and the slowest connection included
        clip = source_clip(args.warmup + args.seconds + 90, height)
        server = GstServer(file=clip).start()
        try:
            for n in args.feeds:
                for mode in args.modes if n % 2 else args.modes[::-1]:  # alternate which mode runs first
                    load0 = os.getloadavg()[0]
                    with tempfile.TemporaryDirectory(prefix="bench_streams.") as d:
                        row = run(mode, n, server.url("file"), args.det_size, args.warmup, args.seconds, Path(d))
                    load = {"load_avg_before": round(load0, 2), "load_avg": round(os.getloadavg()[0], 2)}
                    rows.append({"size": "x".join(map(str, SIZES[height])), **row, **load})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            server.kill()
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sizes": [f"{w}x{h}" for w, h in (SIZES[s] for s in args.sizes)],
        "fps": FPS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(
        "| size | feeds | mode | total fps (of N x 25) | drops per feed | latency p50 / p95 ms | RSS/feed MiB | load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['feeds']} | {r['mode']} | {r['total_fps']} | {r['drop_rate_mean']} | "
            f"{r['latency_p50_ms']} / {r['latency_p95_ms_worst']} | {r['rss_mib_per_feed']} | {r['load_avg']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
