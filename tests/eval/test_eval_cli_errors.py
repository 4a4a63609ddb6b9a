"""Bad arguments, empty and malformed inputs give one-line errors and the right exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamanon.cli import main
from streamanon.errors import ConfigError, MissingDependencyError, SinkError, SourceOpenError


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(["eval", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("streamanon: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        ([], ConfigError.exit_code, "required"),
        (["nonsense"], ConfigError.exit_code, "invalid choice"),
        (["identity"], ConfigError.exit_code, "--faces"),
        (
            ["identity", "--faces", "{empty}", "--methods", "none,sparkles"],
            ConfigError.exit_code,
            "unknown method 'sparkles'",
        ),
        (["identity", "--faces", "{empty}", "--methods", "solid:3"], ConfigError.exit_code, "takes no parameter"),
        (["identity", "--faces", "{empty}", "--methods", "pixelate:x"], ConfigError.exit_code, "invalid parameter"),
        (["identity", "--faces", "{empty}", "--methods", "pixelate:1"], ConfigError.exit_code, "pixel_blocks"),
        (["identity", "--faces", "{empty}"], SourceOpenError.exit_code, "no identity sub-folders with images"),
        (["identity", "--faces", "{missing}"], SourceOpenError.exit_code, "faces folder not found"),
        (["identity", "--faces", "{file}"], SourceOpenError.exit_code, "got a file"),
        (
            ["identity", "--faces", "{empty}", "--json", "{missing}/r.json"],
            SinkError.exit_code,
            "folder does not exist",
        ),
        (["identity", "--faces", "{empty}", "--pad", "-1"], ConfigError.exit_code, "invalid pad"),
        (
            ["detect", "--images", "{empty}", "--annotations", "{missing}"],
            SourceOpenError.exit_code,
            "annotations not found",
        ),
        (
            ["detect", "--images", "{empty}", "--annotations", "{file}", "--det-size", "big"],
            ConfigError.exit_code,
            "--det-size",
        ),
        (
            ["detect", "--images", "{empty}", "--annotations", "{file}", "--det-size", "8"],
            ConfigError.exit_code,
            "det_size",
        ),
        (
            ["detect", "--images", "{empty}", "--annotations", "{file}", "--threshold", "2"],
            ConfigError.exit_code,
            "threshold",
        ),
        (
            ["detect", "--images", "{empty}", "--annotations", "{file}", "--format", "coco"],
            ConfigError.exit_code,
            "invalid choice",
        ),
        (
            ["detect", "--images", "{empty}", "--annotations", "{file}"],
            SourceOpenError.exit_code,
            "cannot tell the format",
        ),
        (
            ["detect", "--images", "{missing}", "--annotations", "{file}"],
            SourceOpenError.exit_code,
            "images folder not found",
        ),
        (["video", "{file}"], ConfigError.exit_code, "anonymised"),
        (["video", "{file}", "{file}", "--every", "0"], ConfigError.exit_code, "--every"),
        (["attack", "--faces", "{empty}", "--epochs", "0"], ConfigError.exit_code, "epochs"),
    ],
)
def test_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, needle: str
) -> None:
    if argv[:1] == ["attack"]:
        pytest.importorskip("torch", reason="the attack needs PyTorch (pip install 'streamanon[torch]')")
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "notes.txt"
    afile.write_text("hello\n")
    subst = {"{empty}": str(empty), "{missing}": str(tmp_path / "missing"), "{file}": str(afile)}
    args = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        args.append(a)
    rc, err = _run(capsys, args)
    line = _one_line_error(err)
    assert rc == code, (rc, err)
    assert needle in line, err


def test_malformed_annotations_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "gt.txt"
    ann.write_text("img.jpg\nnot-a-number\n")
    rc, err = _run(capsys, ["detect", "--images", str(tmp_path), "--annotations", str(ann), "--format", "wider"])
    assert rc == SourceOpenError.exit_code
    assert "gt.txt:2: malformed WIDER annotation" in _one_line_error(err)


def test_video_not_media(tmp_path: Path, capsys: pytest.CaptureFixture[str], need_dlib: None) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    rc, err = _run(capsys, ["video", str(junk), str(junk)])
    assert rc == SourceOpenError.exit_code
    assert "junk.mp4" in _one_line_error(err)


def test_missing_dlib_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    rc, err = _run(capsys, ["identity", "--faces", str(data_dir / "identities" / "dlib_johns"), "--methods", "none"])
    assert rc == MissingDependencyError.exit_code
    assert "streamanon[eval]" in _one_line_error(err)


def test_missing_torch_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    rc, err = _run(capsys, ["attack", "--faces", str(data_dir / "identities" / "dlib_johns"), "--method", "blur"])
    assert rc == MissingDependencyError.exit_code
    assert "streamanon[torch]" in _one_line_error(err)


def test_corrupt_identity_image_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], need_dlib: None
) -> None:
    person = tmp_path / "faces" / "someone"
    person.mkdir(parents=True)
    (person / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    rc, err = _run(capsys, ["identity", "--faces", str(tmp_path / "faces"), "--methods", "none"])
    assert rc == SourceOpenError.exit_code
    assert "broken.jpg" in _one_line_error(err)


def test_no_face_anywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str], need_dlib: None) -> None:
    from PIL import Image

    person = tmp_path / "faces" / "nobody"
    person.mkdir(parents=True)
    Image.new("RGB", (64, 64), (90, 120, 40)).save(person / "grass.png")
    rc, err = _run(capsys, ["identity", "--faces", str(tmp_path / "faces"), "--methods", "none"])
    assert rc == ConfigError.exit_code
    assert "dlib found no face" in _one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["identity", "--methods", "blur,solid", "--dp-cells", "8"],
            "--dp-cells is an option of --method dp-pixelate, not of any method in --methods blur,solid",
        ),
        (["identity", "--methods", "blur", "--dp-cell", "8"], "--dp-cells is an option"),  # abbreviated
        (["attack", "--method", "blur", "--steps", "3"], "not of any method in --method blur"),
        (["natural", "--methods", "solid", "--generator", "g.onnx"], "--generator is an option of --method generate"),
        (["adversary", "--methods", "solid", "--no-eot"], "--no-eot is an option of --method adversarial"),
        (["temporal", "c.mp4", "--methods", "generate", "--steps", "3"], "--steps is an option"),
        (["identity", "--methods", "blur", "--epsilon", "2"], "not of any method in --methods blur"),
    ],
)
def test_an_option_of_no_method_evaluated_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    faces = [] if argv[0] == "temporal" else ["--faces", str(tmp_path)]
    code, err = _run(capsys, [*argv, *faces, "--json", str(tmp_path / "r.json")])
    assert code == ConfigError.exit_code and needle in _one_line_error(err)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["identity", "--methods", "blur,dp-pixelate", "--dp-cells", "8"],
        ["identity", "--methods", "generate:adv=4", "--steps", "2"],  # generate perturbed takes --steps
        ["temporal", "c.mp4", "--methods", "generate", "--adversarial", "--steps", "3"],
        ["temporal", "c.mp4", "--keep", "clips"],  # eval temporal's own --keep DIR, not surrogate's --keep
        ["identity", "--methods", "solid", "--blur-strength", "2", "--mask-scale", "1.5"],  # every method's
    ],
)
def test_options_of_a_method_evaluated_pass_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    faces = [] if argv[0] == "temporal" else ["--faces", str(tmp_path)]
    code, err = _run(capsys, [*argv, *faces, "--json", str(tmp_path / "no" / "r.json")])
    assert code == SinkError.exit_code and "--json: folder does not exist" in _one_line_error(err)


@pytest.mark.parametrize("px", ["5", "4096"])
def test_natural_face_px_out_of_range_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], px: str) -> None:
    rc, err = _run(capsys, ["natural", "--faces", str(tmp_path), "--face-px", px])
    assert rc == ConfigError.exit_code
    assert "invalid --face-px" in _one_line_error(err)
