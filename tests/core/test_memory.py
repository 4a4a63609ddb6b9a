"""The command's memory trimmer (``streamanon._memory``): it runs, stops, and gives freed memory back."""

from __future__ import annotations

import threading
import time

import pytest

from streamanon import _memory
from streamanon._memory import MemoryTrimmer, interval_from_env


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trimmer_calls_until_stopped() -> None:
    calls: list[float] = []
    with MemoryTrimmer(interval=0.01, trim=lambda: calls.append(time.monotonic())) as trimmer:
        assert trimmer.active
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(calls) >= 3
    assert not trimmer.active
    done = len(calls)
    time.sleep(0.05)
    assert len(calls) == done  # nothing after stop
    assert not any(t.name == "streamanon-trim" and t.is_alive() for t in threading.enumerate())


def test_trimmer_off() -> None:
    calls: list[int] = []
    with MemoryTrimmer(interval=0, trim=lambda: calls.append(1)) as trimmer:
        assert not trimmer.active
        time.sleep(0.02)
    assert calls == []


@pytest.mark.parametrize(("raw", "expected"), [("", 0.2), ("0", 0.0), ("0.5", 0.5), ("-1", 0.0), ("soon", 0.2)])
def test_interval_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float) -> None:
    monkeypatch.setenv(_memory.ENV, raw)
    assert interval_from_env() == expected


@pytest.mark.skipif(_memory._glibc_trim() is None, reason="not glibc: there is no malloc_trim to test")
def test_glibc_trim_gives_freed_memory_back() -> None:
    """Memory a thread frees stays in its arena (resident) until malloc_trim hands it back."""
    keep: list[bytearray] = []

    def churn() -> None:
        blocks = [bytearray(16384) for _ in range(12000)]  # 190 MiB in this thread's arena
        keep.append(blocks[-1])  # the last block stays: the arena's top cannot shrink
        del blocks

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    held = _rss_mib()
    trim = _memory._glibc_trim()
    assert trim is not None
    trim()
    released = held - _rss_mib()
    assert released > 60, f"malloc_trim gave back {released:.0f} MiB of ~190 freed"
