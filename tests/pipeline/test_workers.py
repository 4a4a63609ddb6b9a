"""The thread toolkit (``streamanon._workers``): queues that give up on stop, the
drop-oldest queue and its one drop counter, the end marker, error carrying, threads
joined on stop, and the one frame-by-frame retry."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

import pytest
from pipeutil import streamanon_threads

from streamanon._workers import END, Channel, Stopped, Workers, each_or_alone


def test_drop_oldest_keeps_the_newest_counts_each_drop_once_and_never_drops_the_end() -> None:
    drops: list[int] = []
    ch = Channel(threading.Event(), 2, drop_oldest=True, on_drop=lambda: drops.append(1))
    for i in range(5):
        ch.put(i)  # never blocks
    assert ch.dropped == 3 and len(drops) == 3  # one count per lost frame, reported once
    assert ch.get() == 3
    ch.close()  # the end marker waits for room: it is never dropped, nor does it drop a frame
    assert ch.dropped == 3
    assert list(ch) == [4]


def test_end_marker_in_a_full_drop_oldest_queue_costs_the_new_item_not_the_end() -> None:
    ch = Channel(threading.Event(), 1, drop_oldest=True)
    ch.close()
    ch.put("late")  # nothing may follow the end; the late item is the one counted as dropped
    assert ch.dropped == 1 and ch.get() is END


def test_blocked_put_and_get_give_up_when_stopped() -> None:
    stop = threading.Event()
    full, empty = Channel(stop, 1), Channel(stop, 1)
    full.put("x")
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(Stopped):
        full.put("y")
    with pytest.raises(Stopped):
        empty.get()
    assert time.monotonic() - t0 < 2


def test_drain_returns_what_is_queued_after_stop() -> None:
    stop = threading.Event()
    plain, drain = Channel(stop, 4), Channel(stop, 4, drain=True)
    for ch in (plain, drain):
        ch.put(1)
        ch.put(2)
    stop.set()
    assert list(plain) == [] and list(drain) == [1, 2]
    with pytest.raises(queue.Empty):
        Channel(threading.Event()).get(timeout=0.05)


def test_an_error_in_a_thread_stops_the_others_reaches_the_caller_and_every_thread_is_joined() -> None:
    w = Workers()
    ch = w.channel(1)

    def waiter() -> None:
        ch.get()  # would wait forever without the stop flag

    def boom() -> None:
        time.sleep(0.1)
        raise ValueError("stage failed")

    w.spawn("waiter", waiter)
    w.spawn("boom", boom)
    assert w.join(timeout=5)
    assert streamanon_threads() == [] and w.alive() == []
    with pytest.raises(ValueError, match="stage failed"):
        w.raise_error()


def test_join_with_a_timeout_reports_a_thread_that_does_not_end() -> None:
    w = Workers()
    release = threading.Event()
    w.spawn("stuck", lambda: release.wait(5) and None, daemon=True)  # ignores the stop flag
    assert not w.join(timeout=0.1) and w.alive() == ["streamanon-stuck"]
    release.set()
    assert w.join(timeout=5) and w.alive() == []


def test_each_or_alone_retries_frame_by_frame_so_only_the_bad_item_fails() -> None:
    calls: list[list[int]] = []

    def call(items: Sequence[int]) -> list[str]:
        calls.append(list(items))
        if 3 in items:
            raise RuntimeError("bad item")
        return [f"ok{i}" for i in items]

    out = each_or_alone(call, [1, 2, 3, 4])
    assert out[:2] == ["ok1", "ok2"] and out[3] == "ok4" and isinstance(out[2], RuntimeError)
    assert calls == [[1, 2, 3, 4], [1], [2], [3], [4]]
    assert each_or_alone(call, []) == [] and calls[-1] == [4]  # nothing to do: no call


def test_each_or_alone_treats_a_wrong_result_count_as_a_failure() -> None:
    out = each_or_alone(lambda items: ["one"] if len(items) > 1 else list(items), ["a", "b"])
    assert out == ["a", "b"]
    (only,) = each_or_alone(lambda items: [], ["a"])
    assert isinstance(only, ValueError) and "0 results for 1" in str(only)
