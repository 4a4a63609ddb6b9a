"""Soak: concurrent OpenVINO calls, the workload that once deadlocked, repeated under a hard timeout.

The workload (``soak_workload.py``) runs in a child process so that a hang, which no
Python timeout can interrupt inside native code, ends that process (``faulthandler``
prints every thread's stack) and fails this test instead of stalling the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamanon.backends import openvino as ovb

HERE = Path(__file__).resolve().parent
SECONDS = 35  # rounds are started for this long
HANG_S = 20  # one round (~0.7 s here) taking this long is a hang


@pytest.mark.skipif(not ovb.openvino_available(), reason="openvino is not installed")
def test_concurrent_openvino_calls_never_hang_and_never_mix_results() -> None:
    # concurrent calls (the opt-in mode, where the old deadlock was): the serialised default
    # has no two calls in the runtime at once
    cmd = [
        sys.executable,
        str(HERE / "soak_workload.py"),
        "--seconds",
        str(SECONDS),
        "--hang-s",
        str(HANG_S),
        "--concurrent",
        "1",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 2 * HANG_S + 30, cwd=HERE)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the soak did not end (hang outside a round?): {exc.stderr!r:.3000}")
    why = f"soak failed (status {proc.returncode}; a hang prints every thread's stack):\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, why
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["concurrent"] is True
    # enough repetitions to mean something: the old deadlock came about once in ten batch-test runs
    assert summary["rounds"] >= 10, summary
    assert summary["calls"] == summary["rounds"] * 3 * 6 and summary["frames"] == summary["rounds"] * 10, summary


@pytest.mark.skipif(not ovb.openvino_available(), reason="openvino is not installed")
def test_concurrent_and_serialised_calls_agree_and_use_their_streams() -> None:
    import numpy as np

    from streamanon.detect.centerface import prepare_model

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    out = {}
    for concurrent in (True, False):
        backend = ovb.OpenVinoBackend(prepare_model(), "fp32", threads=1, callers=2, concurrent=concurrent)
        out[concurrent] = backend.infer({"input.1": x})
        (net,) = backend._compiled.values()
        streams = int(net.compiled.get_property("NUM_STREAMS"))
        assert streams == (2 if concurrent else 1)
        assert backend.threads_per_call == (1 if concurrent else 2)  # live mode's core-ms count
        backend.close()
    for name, a in out[True].items():
        np.testing.assert_allclose(out[False][name], a, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not ovb.openvino_available(), reason="openvino is not installed")
def test_streams_switches_to_concurrent_calls_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialised by default; ``streamanon streams`` with 2+ feeds switches its shared detector
    to concurrent calls (measured faster there); a forced ``CONCURRENT_CALLS`` wins."""
    import numpy as np

    from streamanon.detect.centerface import prepare_model

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    backend = ovb.OpenVinoBackend(prepare_model(), "fp32", threads=1, callers=2)
    assert backend.concurrent is False and backend.threads_per_call == 2
    before = backend.infer({"input.1": x})
    assert backend.use_concurrent_calls(True) is True
    assert not backend._compiled, "networks compiled for one call at a time are dropped"
    after = backend.infer({"input.1": x})
    (net,) = backend._compiled.values()
    assert int(net.compiled.get_property("NUM_STREAMS")) == 2 and backend.threads_per_call == 1
    for name, a in before.items():
        np.testing.assert_allclose(after[name], a, rtol=1e-4, atol=1e-4)
    backend.close()

    monkeypatch.setattr(ovb, "CONCURRENT_CALLS", False)  # bench ovasync=0: forced serialised
    forced = ovb.OpenVinoBackend(prepare_model(), "fp32", threads=1, callers=2)
    assert forced.use_concurrent_calls(True) is False and forced._streams == 1


@pytest.mark.skipif(not ovb.openvino_available(), reason="openvino is not installed")
def test_streams_with_two_feeds_uses_concurrent_calls(tmp_path: Path) -> None:
    from streamanon.live.streams import Streams
    from streamanon.live.streams_config import parse_streams_config

    cfg = tmp_path / "site.toml"
    entry = '[[stream]]\nname = "{0}"\ninput = "rtsp://127.0.0.1:1/{0}"\noutput = "{1}/{0}.ts"\n'
    cfg.write_text('backend = "openvino"\nprecision = "fp32"\n' + entry.format("a", tmp_path))
    one = Streams(parse_streams_config(cfg))
    assert one.detector is not None and "concurrent_calls" not in one.inference
    assert one.detector.detector.backend.concurrent is False  # type: ignore[attr-defined]
    one.detector.close()
    cfg.write_text(cfg.read_text() + entry.format("b", tmp_path))
    two = Streams(parse_streams_config(cfg))
    assert two.detector is not None and two.inference["concurrent_calls"] is True
    assert two.detector.detector.backend.concurrent is True  # type: ignore[attr-defined]
    two.detector.close()
    assert one.inference["batch"] == two.inference["batch"] == 1  # on the CPU, no batch set: CPU_BATCH
    cfg.write_text("batch = 3\n" + cfg.read_text())
    three = Streams(parse_streams_config(cfg))
    assert three.detector is not None and three.inference["batch"] == three.detector.batch == 3
    three.detector.close()
