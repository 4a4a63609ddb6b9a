"""Issue 22 (part A): every path of the run command tells the truth.

Regions outside the frame, an unwritable --report, options of another method, train
without torch, a corrupt generator, honest counts, --start/--duration and several inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from mediautil import decode

from streamanon.cli import main, parse_time
from streamanon.errors import ConfigError, ModelError, reason

TALK = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"  # 512x512, 25 fps, 200 frames, AAC, one face


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("streamanon: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- --only-region ------------------------------------------------------------------------
@pytest.mark.parametrize("region", ["5000,5000,6000,6000", "0.5,0,1,1.5"], ids=["outside", "typo"])
def test_only_region_outside_the_frame_is_refused_before_any_frame(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], region: str
) -> None:
    out = tmp_path / "out.mp4"
    code, err = run([str(data_dir / TALK), "-o", str(out), "-q", "--only-region", region], capsys)
    assert code == ConfigError.exit_code, err
    assert "--only-region" in one_error_line(err) or "region" in one_error_line(err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_only_region_partly_outside_is_clipped_with_a_warning_and_reported_in_pixels(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    argv = [str(data_dir / TALK), "-o", str(out), "-q", "--duration", "0.4", "--report", str(rep)]
    code, err = run([*argv, "--only-region", "0.5,0,1.5,1"], capsys)
    assert code == ConfigError.exit_code, "relative values above 1 are refused"
    code, err = run([*argv, "--only-region", "300,0,700,512", "--ignore-region", "0,0,0.1,0.1"], capsys)
    assert code == 0, err
    assert "--only-region 300,0,700,512 reaches outside the 512x512 frame: clipped" in err
    sel = json.loads(rep.read_text())["summary"]["selection"]
    assert sel["frame_size"] == [512, 512]
    only = sel["only_regions_px"][0]
    assert only["pixels"] == [300, 0, 512, 512] and only["clipped"] and only["covered_px"] == 212 * 512
    ignore = sel["ignore_regions_px"][0]
    assert ignore["pixels"] == [0, 0, 51.2, 51.2] and not ignore["clipped"]


# -- --report checked first -----------------------------------------------------------------
def test_unwritable_report_is_refused_before_any_frame(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    for report in (tmp_path / "missing" / "r.json", tmp_path):
        t0 = time.perf_counter()
        code, err = run([str(data_dir / TALK), "-o", str(out), "-q", "--report", str(report)], capsys)
        assert code == ConfigError.exit_code, err
        assert "--report" in one_error_line(err)
        assert not out.exists() and time.perf_counter() - t0 < 30
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root ignores permission bits
            code, err = run([str(data_dir / TALK), "-o", str(out), "-q", "--report", str(ro / "r.json")], capsys)
            assert code == ConfigError.exit_code and "not writable" in one_error_line(err)
    finally:
        ro.chmod(0o700)
    assert not out.exists()


# -- options of another method -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "option", "belongs"),
    [
        (["--generator", "g.onnx"], "--generator", "generate"),
        (["--method", "blur", "--dp-cells", "4"], "--dp-cells", "dp-pixelate"),
        (["--method", "pixelate", "--k", "5"], "--k", "k-same"),
        (["--method", "svd", "--steps", "3"], "--steps", "adversarial"),
        (["--method", "generate", "--steps", "3"], "--steps", "generate --adversarial"),
        (["--method", "solid", "--svd-k", "4"], "--svd-k", "svd"),
        (["--method", "blur", "--epsilon", "1"], "--epsilon", "dp-pixelate"),
        (["--method", "k-same", "--generate-min-size", "30"], "--generate-min-size", "generate"),
        (["--method", "adversarial", "--landmarks", "5"], "--landmarks", "k-same"),
    ],
)
def test_options_of_another_method_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], option: str, belongs: str
) -> None:
    src = tmp_path / "in.jpg"
    src.write_bytes(b"")  # never read: the options are checked first
    code, err = run([str(src), "-o", str(tmp_path / "o.jpg"), "-q", *flags], capsys)
    assert code == ConfigError.exit_code, err
    line = one_error_line(err)
    assert option in line and belongs in line and "not of --method" in line


def test_method_options_with_their_method_are_accepted() -> None:
    from streamanon.cli import check_options, given_options, run_parser

    for argv in (
        ["x.mp4", "--method", "dp-pixelate", "--epsilon", "2", "--dp-cells", "8", "--dp-m", "4"],
        ["x.mp4", "--method", "generate", "--adversarial", "--steps", "2", "--epsilon", "4", "--generator", "g"],
        ["x.mp4", "--method", "k-same", "--k", "3", "--face-bank", "b", "--landmarks", "68"],
        ["x.mp4", "--meth", "svd", "--svd-k", "3", "--epsilon", "0.1"],
        ["x.mp4", "--method", "adversarial", "--k", "3", "--objective", "k-anonymity", "--device", "cpu"],
    ):
        parser = run_parser()
        ns = parser.parse_args(argv)
        check_options(ns, given_options(parser, argv), "file")
    parser = run_parser()
    argv = ["x.mp4", "--method", "blur", "--k", "5"]  # the default value, given: still refused
    with pytest.raises(ConfigError, match="--k"):
        check_options(parser.parse_args(argv), given_options(parser, argv), "file")


# -- train without torch, corrupt generator ---------------------------------------------------
def test_train_without_torch_exits_9_with_the_install_hint(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from streamanon.cli import main\n"
        f"sys.exit(main(['train', 'generator', {str(tmp_path)!r}, '-o', 'm.pt', '--cache', 'c']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 9, proc.stderr
    assert "pip install 'streamanon[torch]'" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_generator_message_has_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamanon.backends.openvino import OpenVinoBackend

    bad = tmp_path / "gen.onnx"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError) as info:
        OpenVinoBackend(bad, label=str(bad))
    msg = str(info.value)
    assert "\n" not in msg and not msg.rstrip().endswith(":"), msg
    assert "Unable to read the model" in msg  # OpenVINO's reason, after its "Exception from ..." lines
    assert reason(RuntimeError("Exception from src/a.cpp:1:\nException from src/b.cpp:2:\nthe reason\n")) == (
        "the reason"
    )


# -- honest counts ---------------------------------------------------------------------------------
def test_summary_counts_tracks_and_detections_and_wall_clock_fps(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    t0 = time.perf_counter()
    code, err = run([str(data_dir / TALK), "-o", str(out), "--duration", "1", "--report", str(rep)], capsys)
    wall = time.perf_counter() - t0
    assert code == 0, err
    s = json.loads(rep.read_text())["summary"]
    assert s["frames"] == 25 and s["tracks"] == 1, s  # one person, one track
    assert 0 < s["detections"] <= s["faces"] and s["faces"] >= 25
    assert "25 frames, 1 face track, " in err and f"{s['detections']} detections" in err
    assert s["fps"] == pytest.approx(s["frames"] / s["seconds"], rel=0.02)
    assert s["seconds"] <= wall


def test_k_same_fps_counts_its_first_pass(data_dir: Path, tmp_path: Path) -> None:
    """k-same reads the file twice: its seconds (and fps) are the whole file's wall clock."""
    pytest.importorskip("dlib")
    from streamanon.config import AnonymizeConfig, PipelineConfig
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file

    cfg = PipelineConfig(anonymize=AnonymizeConfig(method="k-same"))
    stages = Stages(cfg)
    t0 = time.perf_counter()
    rep = process_file(data_dir / TALK, tmp_path / "o.mp4", cfg, stages=stages, duration=1.0)
    wall = time.perf_counter() - t0
    assert rep.frames == 25
    assert wall * 0.9 <= rep.seconds <= wall


# -- --start / --duration ------------------------------------------------------------------------
def test_parse_time() -> None:
    assert parse_time("12.5") == 12.5 and parse_time("01:02") == 62 and parse_time("1:00:02.5") == 3602.5
    for bad in ("", "a", "1:2:3:4", "-1", "0:61", "nan"):
        with pytest.raises(Exception, match="invalid time"):
            parse_time(bad)


def test_start_and_duration_keep_only_the_span_with_its_audio(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "span.mp4"
    code, err = run([str(data_dir / TALK), "-o", str(out), "-q", "--start", "00:00:02", "--duration", "1.2"], capsys)
    assert code == 0, err
    frames, times, _ = decode(out)
    assert len(frames) == 30  # 1.2 s at 25 fps
    assert times[0] == 0.0 and times[-1] == pytest.approx(29 / 25)
    with av.open(str(out)) as c:
        audio = [p for p in c.demux(c.streams.audio[0]) if p.dts is not None]
        t = [float(p.pts * p.time_base) for p in audio]
    assert 0 <= t[0] < 0.1 and 1.1 < t[-1] < 1.2  # the span's audio only, shifted like the video


def test_start_past_the_end_and_on_a_still_are_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run([str(data_dir / TALK), "-o", str(tmp_path / "o.mp4"), "-q", "--start", "9"], capsys)
    assert code == ConfigError.exit_code and "past the end" in one_error_line(err)
    code, err = run([str(data_dir / TALK), "-o", str(tmp_path / "o.mp4"), "-q", "--duration", "0"], capsys)
    assert code == ConfigError.exit_code and "--duration" in one_error_line(err)
    assert not (tmp_path / "o.mp4").exists()


# -- several inputs --------------------------------------------------------------------------------
def test_several_inputs_into_one_folder(tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = clip_factory("a.mp4", frames=6), clip_factory("b.mkv", frames=5)
    out = tmp_path / "outdir"
    code, err = run([str(a), str(b), "-o", str(out), "--report", str(tmp_path / "r.json")], capsys)
    assert code == 0, err
    assert len(decode(out / "a.mp4")[0]) == 6 and len(decode(out / "b.mkv")[0]) == 5
    assert "2 files: 2 done, 0 failed" in err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [f["summary"]["input"] for f in doc["files"]] == [str(a), str(b)]
    # options may come between the inputs
    code, err = run([str(a), "-o", str(tmp_path / "o2"), "-q", str(b)], capsys)
    assert code == 0 and (tmp_path / "o2" / "b.mkv").is_file(), err


def test_several_inputs_refuse_a_file_output(tmp_path: Path, clip_factory, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = clip_factory("a.mp4", frames=3), clip_factory("b.mp4", frames=3)
    code, err = run([str(a), str(b), "-o", str(tmp_path / "out.mp4"), "-q"], capsys)
    assert code == ConfigError.exit_code and "-o names a folder" in one_error_line(err)
    code, err = run([str(a), str(b), "-o", str(a), "-q"], capsys)
    assert code == ConfigError.exit_code and "-o names a folder" in one_error_line(err)
    code, err = run([str(a), str(a), "-o", str(tmp_path / "d"), "-q"], capsys)
    assert code == ConfigError.exit_code and "both be written" in one_error_line(err)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "d").exists()


def test_source_span_yields_the_source_frames_from_start(data_dir: Path) -> None:
    from streamanon.io import VideoSource

    with VideoSource(data_dir / TALK, audio=False) as src:
        whole = list(src)
    with VideoSource(data_dir / TALK, audio=False, start=2.0, duration=0.4) as src:
        assert src.info.frames == 10 and not src.frames_exact
        span = list(src)
    assert [f.index for f in span] == list(range(10))
    assert [f.pts for f in span] == [p - whole[50].pts for p in (f.pts for f in whole[50:60])]
    assert all((a.image == b.image).all() for a, b in zip(span, whole[50:60], strict=True))
    with VideoSource(data_dir / TALK, audio=False, start=7.5, duration=5) as src:
        assert src.info.frames == 12  # 7.5 s .. the end (8 s)
        assert len(list(src)) == 12


def test_live_feeds_refuse_start_and_keep_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "rec.mp4")
    code, err = run(["rtsp://127.0.0.1:9/none", "-o", out, "-q", "--start", "5"], capsys)
    assert code == ConfigError.exit_code and "--start only applies to files and folders" in one_error_line(err)
    # --duration keeps its live meaning (and takes MM:SS): the run gets as far as opening the feed
    argv = ["rtsp://127.0.0.1:9/none", "-o", out, "-q", "--duration", "00:02", "--no-reconnect", "--open-timeout", "1"]
    code, err = run(argv, capsys)
    assert code not in (0, ConfigError.exit_code) and "127.0.0.1" in one_error_line(err), err
