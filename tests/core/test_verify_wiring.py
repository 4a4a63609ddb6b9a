"""``--verify`` in batch (the verdict in the manifest) and in ``streamanon streams`` (a
short run with file input and output: the frames sent are checked)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from mediautil import reencode

from streamanon.batch.manifest import MANIFEST_NAME, Manifest
from streamanon.cli import main
from streamanon.errors import VerificationError
from streamanon.live.streams import run_streams
from streamanon.live.streams_config import parse_streams_config
from streamanon.runner import partial_output

pytest.importorskip("dlib")
FACE_CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"


@pytest.fixture(scope="module")
def face_clip(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify") / "face.mp4"
    reencode(data_dir / FACE_CLIP, path, 16)
    return path


def test_batch_records_the_verdict(face_clip: Path, tmp_path: Path) -> None:
    archive, out = tmp_path / "a", tmp_path / "out"
    (archive / "sub").mkdir(parents=True)
    (archive / "face.mp4").write_bytes(face_clip.read_bytes())
    (archive / "sub" / "again.mp4").write_bytes(face_clip.read_bytes())
    args = [str(archive), "-o", str(out), "-j", "1", "-q", "--verify-every", "4"]
    code = main(["batch", *args, "--method", "blur", "--blur-strength", "0.1"])
    assert code == VerificationError.exit_code
    with Manifest(out, readonly=True) as m:
        rows = m.rows()
    for rel in ("face.mp4", "sub/again.mp4"):
        r = rows[rel]
        assert r.status == "failed" and r.error_type == "VerificationError" and r.exit_code == 10
        assert r.verify_passed is False and r.verify_frames == 4 and r.verify_matches and r.verify_matches >= 1
        assert r.verify_worst_distance is not None and r.verify_worst_distance < 0.6
        assert r.verify_worst_frame is not None and not r.retryable
        # complete but not anonymous: set aside under the partial name, never as a finished file
        assert (out / partial_output(Path(rel))).is_file() and not (out / rel).exists()
        assert r.output == partial_output(Path(rel)).as_posix()
    out2 = tmp_path / "out2"
    assert main(["batch", str(archive), "-o", str(out2), "-j", "1", "-q", "--verify-every", "4"]) == 0  # solid
    with Manifest(out2, readonly=True) as m:
        r = m.rows()["face.mp4"]
    assert r.status == "done" and r.verify_passed is True and r.verify_frames == 4 and r.verify_matches == 0


def test_old_manifest_gains_the_verify_columns(tmp_path: Path) -> None:
    from streamanon.batch import manifest

    # the schema as it was before the verify columns
    old = "\n".join(line for line in manifest._SCHEMA.splitlines() if "verify_" not in line)
    old = old.replace("updated_at TEXT,", "updated_at TEXT")
    assert "verify" not in old
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.executescript(old)
    db.execute("INSERT INTO files (path, status) VALUES ('x.mp4', 'done')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with Manifest(tmp_path, readonly=True) as m:  # read-only: the row reads, verify columns as NULL
        assert m.rows()["x.mp4"].verify_passed is None
    with Manifest(tmp_path) as m:
        m.update("x.mp4", verify_passed=True, verify_frames=3)
        r = m.rows()["x.mp4"]
    assert r.verify_passed is True and r.verify_frames == 3


def test_streams_verify_wiring(face_clip: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "streams.toml"
    cfg.write_text(
        f"""
report_dir = "{tmp_path / "reports"}"
[defaults]
verify_every = 2
no_drop = true
[[stream]]
name = "weak"
input = "{face_clip}"
output = "{tmp_path / "weak.mp4"}"
method = "blur"
blur_strength = 0.1
[[stream]]
name = "solid"
input = "{face_clip}"
output = "{tmp_path / "solid.mp4"}"
method = "solid"
[[stream]]
name = "plain"
input = "{face_clip}"
output = "{tmp_path / "plain.mp4"}"
verify_every = 0
"""
    )
    specs = {s.name: s for s in parse_streams_config(cfg).streams}
    assert specs["weak"].verify_every == 2 and specs["plain"].verify_every == 0
    code = run_streams(cfg, quiet=True)
    assert code == VerificationError.exit_code
    reports = {n: json.loads((tmp_path / "reports" / f"{n}.json").read_text())["summary"] for n in specs}
    weak, solid = reports["weak"]["anonymizer"]["verify"], reports["solid"]["anonymizer"]["verify"]
    assert weak["every"] == 2 and weak["frames_checked"] >= 1 and weak["faces_matching"] >= 1 and not weak["passed"]
    assert solid["frames_checked"] >= 1 and solid["faces_matching"] == 0 and solid["passed"]
    m = reports["weak"]["metrics"]
    assert m["frames_in"] == 16 and m["frames_dropped"] == 0 and m["frames_failed"] == 0  # no_drop: all anonymised
    assert weak["frames_checked"] + weak["frames_skipped"] == 8  # every 2nd frame sent is offered
    assert "verify" not in reports["plain"]["anonymizer"]
