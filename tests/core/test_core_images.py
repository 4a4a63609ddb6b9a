"""Stills keep their format and size; EXIF is stripped unless --keep-metadata; folders mirror."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamanon.cli import main
from streamanon.config import PipelineConfig
from streamanon.runner import process_file


def gps_jpeg(src: Path, dst: Path) -> None:
    im = Image.open(src)
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0131] = "serial-XYZ-123"
    im.save(dst, exif=exif.tobytes(), quality=95)


def test_jpeg_exif_stripped_and_kept(tmp_path: Path, data_dir: Path) -> None:
    src = tmp_path / "p.jpg"
    gps_jpeg(data_dir / "identities/face_recognition_examples/two_people.jpg", src)
    out, kept = tmp_path / "o.jpg", tmp_path / "k.jpg"
    rep = process_file(src, out, PipelineConfig())
    assert rep.faces >= 2
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == Image.open(src).size
        assert not im.getexif()
    process_file(src, kept, PipelineConfig.from_dict({"io": {"keep_metadata": True}}))
    with Image.open(kept) as im:
        assert im.getexif().get(0x0131) == "serial-XYZ-123"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF"])
def test_formats_kept(tmp_path: Path, data_dir: Path, fmt: str) -> None:
    src = tmp_path / f"p.{fmt.lower()}"
    Image.open(data_dir / "identities/face_recognition_examples/obama_small.jpg").save(src, format=fmt)
    out = tmp_path / f"o.{fmt.lower()}"
    rep = process_file(src, out, PipelineConfig())
    assert rep.faces >= 1
    with Image.open(out) as im, Image.open(src) as orig:
        assert im.format == fmt and im.size == orig.size
        diff = np.abs(np.asarray(im.convert("RGB"), int) - np.asarray(orig.convert("RGB"), int))
        assert diff.max() > 100  # the face was replaced


def test_folder_is_mirrored(tmp_path: Path, data_dir: Path, clip_factory, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    Image.open(data_dir / "identities/face_recognition_examples/biden.jpg").save(inp / "a.jpg")
    clip_factory("in/sub/b.mp4")
    (inp / "notes.txt").write_text("not media")
    out = tmp_path / "out"
    code = main([str(inp), "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    assert (out / "a.jpg").is_file() and (out / "sub" / "b.mp4").is_file()
    assert not (out / "notes.txt").exists()


def test_folder_with_a_bad_file_continues_and_fails(
    tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    clip_factory("in/good.mp4")
    (inp / "bad.mp4").write_bytes(b"garbage" * 100)
    code = main([str(inp), "-o", str(tmp_path / "out"), "-q"])
    assert code == 3
    assert (tmp_path / "out" / "good.mp4").is_file()
    assert "1 of 2 files failed" in capsys.readouterr().err
