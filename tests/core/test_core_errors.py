"""Bad input: one-line message, documented exit code, no traceback, input untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mediautil import decode, sha256

from streamanon.anonymize import METHODS
from streamanon.cli import main
from streamanon.errors import ConfigError, DecodeError, SinkError, SourceOpenError


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_line(err: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("streamanon: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run([str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"), "-q"], capsys)
    assert code == SourceOpenError.exit_code
    assert "input not found" in err
    assert_one_line(err)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.mp4", b"this is not a video\n" * 10),
        ("random.mkv", os.urandom(4096)),
        ("empty.mp4", b""),
        ("fake.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"),
    ],
)
def test_non_media_or_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    before = sha256(src)
    out = tmp_path / ("out" + src.suffix)
    code, err = run([str(src), "-o", str(out), "-q"], capsys)
    assert code == SourceOpenError.exit_code, err
    assert "cannot" in err or "no video" in err
    assert_one_line(err)
    assert sha256(src) == before
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_truncated_writes_what_decoded(tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str]) -> None:
    # moov first (faststart-like: fragment via movflags) so a cut file still opens.
    src = clip_factory("full.mkv", frames=48)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    before = sha256(cut)
    out = tmp_path / "out.mkv"
    code, err = run([str(cut), "-o", str(out), "-q"], capsys)
    assert code == DecodeError.exit_code, err
    assert "truncated or corrupt" in err and "frames" in err
    assert_one_line(err)
    assert not out.exists(), "an incomplete output never takes the final name"
    frames, _, _ = decode(tmp_path / "out.partial.mkv")
    assert 0 < len(frames) < 48
    assert sha256(cut) == before


def test_refuses_to_overwrite_input(tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str]) -> None:
    src = clip_factory("a.mp4")
    before = sha256(src)
    code, err = run([str(src), "-o", str(src), "-q"], capsys)
    assert code == SinkError.exit_code
    assert "refusing to overwrite an input" in err
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    code, err = run([str(src), "-o", str(link), "-q"], capsys)
    assert code == SinkError.exit_code
    assert sha256(src) == before


def test_unwritable_output(tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str]) -> None:
    src = clip_factory("a.mp4")
    code, err = run([str(src), "-o", str(tmp_path / "missing" / "o.mp4"), "-q"], capsys)
    assert code == SinkError.exit_code
    assert "does not exist" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits
            pytest.skip("running as root: permission bits are not enforced")
        code, err = run([str(src), "-o", str(ro / "o.mp4"), "-q"], capsys)
        assert code == SinkError.exit_code
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "smudge"], "unknown method 'smudge'; choose from: " + ", ".join(sorted(METHODS))),
        (["--frobnicate"], "unrecognized arguments"),
        (["--threshold", "1.5"], "invalid threshold=1.5"),
        (["--color", "purple"], "invalid color"),
        (["--crf", "99"], "invalid crf=99"),
        (["--segment", "60"], "--segment only applies to live feeds"),
        (["--no-reconnect", "--rtsp-transport", "udp"], "--no-reconnect, --rtsp-transport only apply to live feeds"),
    ],
)
def test_bad_options(
    tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    src = clip_factory("a.mp4")
    code, err = run([str(src), "-o", str(tmp_path / "o.mp4"), "-q", *args], capsys)
    assert code == ConfigError.exit_code, err
    assert needle in err
    assert_one_line(err)


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamanon", str(tmp_path / "missing.mov")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == SourceOpenError.exit_code
    assert proc.stderr.strip().startswith("streamanon: error: input not found")
    assert "Traceback" not in proc.stderr
