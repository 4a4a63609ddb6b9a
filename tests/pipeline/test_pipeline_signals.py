"""Ctrl-C and SIGTERM stop every stage, finalise the output and exit 130 (end to end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mediautil import decode
from pipeutil import FakeDetector, make_clip

from streamanon.config import PipelineConfig
from streamanon.io import VideoSource, temp_path_for
from streamanon.pipeline import Interrupted, Pipeline, Stages

FRAMES = 1500


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip: Path = make_clip(
        tmp_path_factory.mktemp("sig") / "long.mp4", width=320, height=240, frames=FRAMES, rate=25, audio=True
    )
    return clip


def _wait_for_output(proc: subprocess.Popen[bytes], partial: Path, timeout: float = 60.0) -> None:
    """Block until the child has encoded some frames (its partial output grows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamanon exited ({proc.returncode}) before it could be interrupted")
        if partial.exists() and partial.stat().st_size > 20_000:
            return
        time.sleep(0.05)
    raise AssertionError("streamanon wrote no output in time")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_finalises_output_and_exits_130(long_clip: Path, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamanon", str(long_clip), "-o", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        _wait_for_output(proc, temp_path_for(out))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    assert "Traceback" not in err.decode()
    # the frames processed are kept, but never under the final name (issue 22)
    partial = out.with_name("out.partial.mp4")
    assert partial.is_file() and not out.exists() and not temp_path_for(out).exists()
    frames, times, _ = decode(partial)  # playable: decodes to the end without error
    assert 0 < len(frames) < FRAMES
    assert times == sorted(times)


@pytest.mark.timeout(60)
def test_keyboard_interrupt_in_caller_loop_keeps_processed_frames(clip_factory: Callable[..., Path]) -> None:
    """A SIGINT that lands while the caller is busy (not inside the pipeline) still ends
    with ``Interrupted`` from the pipeline after all threads are joined."""
    clip = clip_factory(frames=60)
    cfg = PipelineConfig()
    seen = []
    with VideoSource(clip, audio=False) as source:
        pipe = Pipeline(cfg, Stages(cfg, detector=FakeDetector()))
        with pytest.raises(Interrupted):
            for res in pipe.run(source):
                seen.append(res.frame.index)
                if len(seen) == 5:
                    signal.raise_signal(signal.SIGINT)  # handled: requests a stop
                    time.sleep(0.2)  # the caller is still "writing"
    assert seen[:5] == [0, 1, 2, 3, 4] and len(seen) < 60
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.timeout(60)
def test_a_run_finalised_off_the_main_thread_hands_ctrl_c_on(clip_factory: Callable[..., Path]) -> None:
    """A run started on the main thread and finalised on another (the garbage collector may
    close an abandoned run anywhere) cannot restore the SIGINT handler; its handler then hands
    the signal on, so a later Ctrl-C still interrupts instead of stopping a finished run."""
    clip = clip_factory(frames=30)
    cfg = PipelineConfig()
    with VideoSource(clip, audio=False) as source:
        run = Pipeline(cfg, Stages(cfg, detector=FakeDetector())).run(source)
        next(run)  # the run's handler is installed (main thread)
        closer = threading.Thread(target=run.close)
        closer.start()
        closer.join()
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # could not be restored
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.5)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
