"""The workload that deadlocked concurrent OpenVINO calls, repeated; run as a script.

What the batch tests' runs do to the detector: several detector workers of one pipeline
calling one backend at once, on small clips of changing sizes (a shape compiled while
another worker calls, first calls on fresh infer requests). Each round here

* builds a fresh ``OpenVinoBackend`` (fresh compiled networks and requests) and has
  ``--threads`` threads, released together, call it on two shapes and two batch sizes;
  every output must equal the same input's output computed alone (a request shared by two
  calls, or an output buffer reused too early, would show here);
* runs a short clip through a ``Pipeline`` whose ``Stages`` (built once, as a batch worker
  does) have ``--threads`` detector workers, at the round's frame size; every frame must
  come back detected, none masked for a failure.

A round that does not finish within ``--hang-s`` is a hang: ``faulthandler`` prints every
thread's stack and the process exits with status 1. The last line printed is a JSON
summary. Used by ``test_backends_soak.py``; ``--seconds`` bounds the whole run.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import threading
import time
from typing import Any

import numpy as np

from streamanon.backends.openvino import OpenVinoBackend
from streamanon.config import DetectConfig, PipelineConfig
from streamanon.detect.centerface import prepare_model
from streamanon.pipeline import Pipeline, Stages
from streamanon.types import Frame

INPUT = "input.1"
# network input shapes (batch, 3, h, w) alternated within a round; frame sizes of the clips
SHAPES = [((1, 3, 64, 96), (2, 3, 64, 96)), ((1, 3, 96, 128), (2, 3, 96, 128)), ((1, 3, 128, 64), (2, 3, 128, 64))]
CLIP_SIZES = [(96, 64), (128, 96), (64, 128), (160, 96)]
CALLS_PER_THREAD = 6
CLIP_FRAMES = 10


def direct_round(r: int, threads: int) -> int:
    """Concurrent calls on a fresh backend; returns how many were checked."""
    backend = OpenVinoBackend(prepare_model(), "fp32", threads=1, callers=threads)
    rng = np.random.default_rng(r)
    shapes = SHAPES[r % len(SHAPES)]
    inputs = [rng.uniform(0, 255, shapes[i % 2]).astype(np.float32) for i in range(threads * 2)]
    results: dict[tuple[int, int], dict[str, Any]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for k in range(CALLS_PER_THREAD):
                i = (t + k) % len(inputs)
                results[(t, k)] = backend.infer({INPUT: inputs[i]})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,), name=f"soak-{t}") for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    alone = [backend.infer({INPUT: x}) for x in inputs]  # one call at a time
    for (t, k), out in results.items():
        ref = alone[(t + k) % len(inputs)]
        for name, a in ref.items():
            np.testing.assert_allclose(out[name], a, rtol=1e-4, atol=1e-4, err_msg=f"round {r} thread {t} call {k}")
    backend.close()
    return len(results)


def pipeline_round(r: int, stages: Stages, config: PipelineConfig) -> int:
    """One short clip through the pipeline; returns the frames that came back."""
    w, h = CLIP_SIZES[r % len(CLIP_SIZES)]
    rng = np.random.default_rng(1000 + r)
    frames = [Frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), i) for i in range(CLIP_FRAMES)]
    got = list(Pipeline(config, stages).run(frames))
    if len(got) != CLIP_FRAMES or any(x.failed is not None or not x.detected for x in got):
        bad = [(x.frame.index, x.failed) for x in got if x.failed is not None or not x.detected]
        raise AssertionError(f"round {r}: {len(got)}/{CLIP_FRAMES} frames back, failed or undetected: {bad}")
    return len(got)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=40.0, help="stop starting rounds after this long")
    p.add_argument("--hang-s", type=float, default=20.0, help="a round longer than this is a hang")
    p.add_argument("--threads", type=int, default=3, help="concurrent callers / detector workers")
    p.add_argument("--max-rounds", type=int, default=1000)
    p.add_argument(
        "--concurrent", type=int, choices=[0, 1], help="OpenVINO calls at once (default: the module's default)"
    )
    ns = p.parse_args(argv)
    if ns.concurrent is not None:
        from streamanon.backends import openvino

        openvino.CONCURRENT_CALLS = bool(ns.concurrent)
    config = PipelineConfig(detect=DetectConfig(backend="openvino", precision="fp32", workers=ns.threads, threads=1))
    stages = Stages(config)
    start = time.monotonic()
    rounds = calls = frames = 0
    while rounds < ns.max_rounds and time.monotonic() - start < ns.seconds:
        faulthandler.dump_traceback_later(ns.hang_s, exit=True)
        calls += direct_round(rounds, ns.threads)
        frames += pipeline_round(rounds, stages, config)
        faulthandler.cancel_dump_traceback_later()
        rounds += 1
    summary = {"rounds": rounds, "calls": calls, "frames": frames, "seconds": round(time.monotonic() - start, 1)}
    summary["concurrent"] = bool(getattr(stages.detector, "backend", None) and stages.detector.backend.concurrent)  # type: ignore[attr-defined]
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
