"""Helpers for the batch tests: archive builders, manifest/output readers, fake tasks.

Task functions are module-level so that spawned workers can import them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from streamanon.batch.manifest import MANIFEST_NAME
from streamanon.batch.worker import Task, TaskResult

# name in the archive -> file under the shared data folder
REAL_FILES = {
    "face-api.mp4": "videos/face-api.js__test_media_video.mp4",
    "asl/eat.mkv": "videos/intel_asl_gestures/eat.mkv",
    "asl/deeper/want.mkv": "videos/intel_asl_gestures/want.mkv",
    "photos/obama.jpg": "identities/face_recognition_examples/obama.jpg",
    "photos/two_people.jpg": "identities/face_recognition_examples/two_people.jpg",
}
TRUNCATED = "asl/truncated.mkv"  # first 70 kB of hungry.mkv: decodes partly
RANDOM_MP4 = "broken/random.mp4"  # random bytes named .mp4
NOTES = "notes.txt"


def build_real_archive(root: Path, data_dir: Path) -> Path:
    """Copy a few short real clips/photos into ``root`` and add corrupt and non-media files."""
    for rel, src in REAL_FILES.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / src, dst)
    (root / TRUNCATED).write_bytes((data_dir / "videos/intel_asl_gestures/hungry.mkv").read_bytes()[:70_000])
    (root / RANDOM_MP4).parent.mkdir(parents=True, exist_ok=True)
    (root / RANDOM_MP4).write_bytes(np.random.default_rng(7).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    (root / NOTES).write_text("meeting notes, not media\n" * 20)
    (root / "photos" / "README").write_text("plain text without extension\n")
    return root


def rows(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The manifest's ``files`` table as dicts, read directly with sqlite3."""
    db = sqlite3.connect(f"file:{out_dir / MANIFEST_NAME}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return {r["path"]: dict(r) for r in db.execute("SELECT * FROM files")}
    finally:
        db.close()


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every video frame of ``path`` as RGB arrays (images: one frame)."""
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        with Image.open(path) as im:
            return [np.asarray(im.convert("RGB"))]
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def decoded_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".streamanon-partial" in p.name]


def fake_task(task: Task) -> TaskResult:
    """Succeed after a short sleep; a file whose name contains "crash" kills its worker."""
    if "crash" in task.rel:
        os._exit(9)  # like the OOM killer: no exception, the process is just gone
    time.sleep(0.05)
    return TaskResult(task.rel, "done", frames=len(task.rel), worker=f"pid:{os.getpid()}")


def pid_task(task: Task) -> TaskResult:
    """Report the worker's pid, so that tests can see processes being reused."""
    time.sleep(0.2)
    return TaskResult(task.rel, "done", worker=f"pid:{os.getpid()}")


def crash_once_task(task: Task) -> TaskResult:
    """Kill the worker on the first attempt of "once*" files and on every attempt of "always_crash*"."""
    marker = Path(task.out_root) / f"{task.rel}.attempted"
    if task.rel.startswith("always_crash"):
        os._exit(3)
    if task.rel.startswith("once") and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("first attempt")
        os._exit(3)
    return TaskResult(task.rel, "done", worker=f"pid:{os.getpid()}")
