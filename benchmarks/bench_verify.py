"""Cost of ``--verify``: end-to-end fps without it, with it, and with ``--verify-every 5``.

On each clip (the first ``--frames`` frames of three shared clips with faces, re-encoded
into a temporary folder), ``runner.process_file`` runs with the same prebuilt ``Stages``
(model loading excluded) and ``--method blur``; the runs alternate between the three
settings (off, every frame, every 5th), ``--reps`` times, so that a change in the machine's
load hits all three alike. fps = frames / wall seconds of the whole call (decode, detect,
anonymise, encode, and for --verify the second decode of input and output plus dlib's
HOG detector, CNN confirmation and recogniser). The median per setting is reported, with
the ratio to "off". The run's verdict is printed too (blur at its default passes or not).

    python benchmarks/bench_verify.py [--frames 48] [--reps 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import DATA
from mediautil import reencode

from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.errors import StreamanonError
from streamanon.pipeline import Stages
from streamanon.runner import process_file
from streamanon.verify import Verifier

log = logging.getLogger("bench_verify")
CLIPS = (
    "videos/intel_asl_gestures/eat.mkv",  # 640x480, one signer, face ~80 px
    "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4",  # 512x512, one large face
    "videos/face_recognition__short_hamilton_clip.mp4",  # 640x360, 1-3 medium faces, cuts
)
SETTINGS = {"off": 0, "verify": 1, "verify-every-5": 5}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--method", default="blur")
    p.add_argument("--json", type=Path)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = PipelineConfig(anonymize=AnonymizeConfig(method=ns.method))
    stages = Stages(config)
    verifiers = {n: Verifier(every=e) for n, e in SETTINGS.items() if e}
    results: dict[str, Any] = {
        "frames": ns.frames,
        "reps": ns.reps,
        "method": ns.method,
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "clips": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for clip in CLIPS:
            src = Path(tmp) / (Path(clip).stem + ".mp4")
            reencode(DATA / clip, src, ns.frames)
            fps: dict[str, list[float]] = {n: [] for n in SETTINGS}
            verdicts: dict[str, Any] = {}
            for rep in range(ns.reps):
                for name in SETTINGS:
                    dst = Path(tmp) / f"out-{name}.mp4"
                    t0 = time.perf_counter()
                    try:
                        report = process_file(
                            src, dst, config, stages=stages, report_frames=False, verifier=verifiers.get(name)
                        )
                    except StreamanonError as exc:  # a --verify match still measured the whole call
                        report = getattr(exc, "report", None)
                        if report is None:
                            raise
                    seconds = time.perf_counter() - t0
                    fps[name].append(report.frames / seconds)
                    if report.verify:
                        v = report.verify
                        verdicts[name] = {
                            k: v[k] for k in ("passed", "frames_checked", "faces_found", "faces_matching")
                        } | {"worst_distance": v["worst_distance"]}
                    log.info("%s rep %d %s: %.2f fps", Path(clip).name, rep, name, fps[name][-1])
            med = {n: statistics.median(v) for n, v in fps.items()}
            results["clips"][clip] = {
                "fps_runs": fps,
                "fps_median": {n: round(v, 2) for n, v in med.items()},
                "ratio_to_off": {n: round(med[n] / med["off"], 3) for n in SETTINGS},
                "verdicts": verdicts,
            }
    results["loadavg_end"] = os.getloadavg()
    print(f"{'clip':52s} {'off':>7s} {'verify':>7s} {'every5':>7s}  ratio verify / every5")
    for clip, r in results["clips"].items():
        m, q = r["fps_median"], r["ratio_to_off"]
        print(
            f"{Path(clip).name:52s} {m['off']:7.2f} {m['verify']:7.2f} {m['verify-every-5']:7.2f}  "
            f"{q['verify']:.2f} / {q['verify-every-5']:.2f}"
        )
    if ns.json:
        ns.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
