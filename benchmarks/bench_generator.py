"""Per-face latency of the exported face generator on the CPU backends, batch 1 and 8.

Runs ``GeneratorRunner`` on ONNX Runtime and on OpenVINO (fp32, and bf16 where the CPU
has it natively) with random chips, the template mask, plausible landmarks and fresh
latents; reports the median of ``--repeats`` timed calls after ``--warmup`` calls, per
call and per face. ``--size 128`` (needs torch) exports an untrained 128 px generator of
the default architecture to time it: latency does not depend on the weights.

    python benchmarks/bench_generator.py [--model engines/generator-64.onnx] [--size 128]
        [--threads 1] [--repeats 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamanon.anonymize.generator_chip import template_mask
from streamanon.backends.base import EngineConfig
from streamanon.errors import StreamanonError
from streamanon.models.generator import GeneratorRunner, default_model


def untrained_model(size: int, folder: Path) -> Path:
    """An exported, untrained generator of the default architecture (for timing only)."""
    import torch

    from streamanon.generate.export import export_generator
    from streamanon.generate.model import Generator, GeneratorConfig
    from streamanon.generate.train import CHECKPOINT_KIND, CHECKPOINT_VERSION

    torch.set_num_threads(1)
    cfg = GeneratorConfig(size=size)
    ckpt = folder / f"untrained-{size}.pt"
    g = Generator(cfg)
    torch.save(
        {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "config": cfg.to_dict(),
            "G_ema": g.state_dict(),
            "step": 0,
        },
        ckpt,
    )
    return export_generator(ckpt, folder / f"untrained-{size}.onnx").path


def time_runner(runner: GeneratorRunner, batch: int, warmup: int, repeats: int) -> dict[str, float]:
    s = runner.size
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
    masks = np.broadcast_to(template_mask(s), (batch, s, s)).copy()
    lms = rng.uniform(0.35 * s, 0.65 * s, (batch, 68, 2)).astype(np.float32)
    for _ in range(warmup):
        runner(chips, masks, lms, runner.latents(batch, rng))
    times = []
    for _ in range(repeats):
        z = runner.latents(batch, rng)
        t = time.perf_counter()
        runner(chips, masks, lms, z)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"batch": batch, "ms_per_call": med * 1e3, "ms_per_face": med * 1e3 / batch, "faces_per_s": batch / med}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="exported generator (default: the shipped 64 px one)")
    p.add_argument(
        "--size", type=int, default=None, choices=[64, 128], help="time an untrained generator of this size instead"
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads per call (default 1)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", type=Path, default=None)
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = untrained_model(ns.size, Path(tmp)) if ns.size else (ns.model or default_model())
        rows: list[dict[str, Any]] = []
        engines = [("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")]
        for backend, precision in engines:
            try:
                runner = GeneratorRunner(model, EngineConfig(backend=backend, precision=precision, threads=ns.threads))  # type: ignore[arg-type]
            except StreamanonError as exc:
                print(f"{backend} {precision}: skipped ({exc})", file=sys.stderr)
                continue
            for batch in (1, 8):
                r = time_runner(runner, batch, ns.warmup, ns.repeats)
                r |= {"backend": backend, "precision": precision, "size": runner.size, "threads": ns.threads}
                rows.append(r)
                print(
                    f"{backend:12s} {precision}  {runner.size}px  batch {batch}:  "
                    f"{r['ms_per_call']:7.2f} ms/call  {r['ms_per_face']:6.2f} ms/face  {r['faces_per_s']:7.1f} faces/s"
                )
            runner.close()
    if ns.json:
        info = {
            "model": str(ns.model or default_model()) if not ns.size else f"untrained-{ns.size}",
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        }
        ns.json.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
