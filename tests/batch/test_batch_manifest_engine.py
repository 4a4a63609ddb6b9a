"""The SQLite manifest and the process-pool engine (with fake tasks: no models involved)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from batch_helpers import fake_task, pid_task

from streamanon.batch.engine import LocalEngine
from streamanon.batch.manifest import MANIFEST_NAME, Manifest, Row
from streamanon.batch.worker import Task, TaskResult
from streamanon.errors import ConfigError


def test_manifest_roundtrip_and_status_constraint(tmp_path: Path) -> None:
    with Manifest(tmp_path) as m:
        with m.transaction():
            m.put(Row("a.mp4", "pending", kind="video", size=10, mtime_ns=5, settings_hash="s1"))
            m.put(Row("b.txt", "skipped", error="not media"))
        m.update("a.mp4", status="done", frames=12, faces=3, retryable=True)
        got = m.get("a.mp4")
        assert got is not None and (got.status, got.frames, got.faces, got.retryable) == ("done", 12, 3, True)
        assert m.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0, "skipped": 1}
        with pytest.raises(sqlite3.IntegrityError):
            m.update("a.mp4", status="half-done")
        with pytest.raises(ValueError, match="unknown manifest columns"):
            m.update("a.mp4", colour="red")
    with Manifest(tmp_path, readonly=True) as ro:
        assert set(ro.rows()) == {"a.mp4", "b.txt"}


def test_running_rows_become_pending_at_the_next_start(tmp_path: Path) -> None:
    with Manifest(tmp_path) as m:
        m.put(Row("killed.mp4", "running"))
        m.put(Row("fine.mp4", "done"))
    with Manifest(tmp_path) as m:
        assert m.reset_running() == ["killed.mp4"]
        row = m.get("killed.mp4")
        assert row is not None and row.status == "pending" and "interrupted" in (row.error or "")
        assert m.reset_running() == []


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no batch manifest"):
        Manifest(tmp_path, readonly=True)
    Manifest(tmp_path).close()
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(ConfigError, match="schema 99"):
        Manifest(tmp_path)


def _tasks(*names: str) -> list[Task]:
    return [Task(n, f"/in/{n}", f"/out/{n}", "/out", "{}", "video") for n in names]


def test_local_engine_survives_a_dying_worker() -> None:
    engine = LocalEngine(2, task_fn=fake_task, max_attempts=2)
    started: list[str] = []
    results: dict[str, TaskResult] = {}

    def on_done(task: Task, res: TaskResult) -> None:
        assert task.rel not in results, f"{task.rel} reported twice"
        results[task.rel] = res

    engine.run(
        _tasks("a.mp4", "b.mp4", "crash.mp4", "c.mp4", "d.mp4", "e.mp4"), lambda t: started.append(t.rel), on_done
    )
    assert set(results) == {"a.mp4", "b.mp4", "crash.mp4", "c.mp4", "d.mp4", "e.mp4"}
    crash = results["crash.mp4"]
    assert crash.status == "failed" and crash.error_type == "WorkerCrashed" and crash.retryable
    assert all(results[n].status == "done" for n in results if n != "crash.mp4")
    # alone in flight it killed its worker max_attempts times (plus once among others, if it was)
    assert started.count("crash.mp4") in (2, 3)
    assert engine.crashes == started.count("crash.mp4")


def test_local_engine_reuses_worker_processes_and_bounds_inflight() -> None:
    engine = LocalEngine(1, task_fn=pid_task)
    order: list[str] = []
    engine.run(
        _tasks("a", "b", "c"),
        lambda t: order.append(f"start {t.rel}"),
        lambda t, r: order.append(f"done {t.rel} {r.worker}"),
    )
    assert [o.split()[0] for o in order] == ["start", "done"] * 3  # never more than `jobs` in flight
    assert len({o.split()[2] for o in order if o.startswith("done")}) == 1  # one process did every file
