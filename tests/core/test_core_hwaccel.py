"""Hardware decode/encode selection (``--hwaccel``, ``--encoder``): the CPU side of it.

The openers that touch devices (``hwaccel.device_opener``/``encoder_opener``) are replaced
by fakes to test what is chosen and why; the software path is checked on a real clip; the
NVDEC/NVENC tests run only where a CUDA device really opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from mediautil import DATA, decode

from streamanon.cli import main
from streamanon.config import IOConfig
from streamanon.errors import ConfigError
from streamanon.io import VideoSink, VideoSource, hwaccel
from streamanon.live.endpoints import input_spec, output_spec
from streamanon.live.options import LiveOptions

CLIP = DATA / "videos" / "face_recognition__short_hamilton_clip.mp4"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    hwaccel.clear_cache()
    yield
    hwaccel.clear_cache()


def _opens(calls: list[str]) -> object:
    def opener(device: str, *args: object) -> None:
        calls.append(device)

    return opener


def _fails(message: str) -> object:
    def opener(device: str, *args: object) -> None:
        raise RuntimeError(message)

    return opener


def _compiled_with(monkeypatch: pytest.MonkeyPatch, *devices: str) -> None:
    monkeypatch.setattr(av.codec.hwaccel, "hwdevices_available", lambda: list(devices))


# -- decode -------------------------------------------------------------------------------------
def test_auto_decodes_on_the_device_that_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _compiled_with(monkeypatch, "cuda", "qsv")
    monkeypatch.setattr(hwaccel, "device_opener", _opens(calls))
    choice = hwaccel.choose_decode("auto")
    assert (choice.chosen, choice.hardware) == ("cuda", True)
    assert "cuda device opened" in choice.reason
    hwaccel.choose_decode("auto")
    assert calls == ["cuda"], "the device is opened once per process"
    assert (IOConfig().hwaccel, IOConfig().encoder) == (hwaccel.DEFAULT_HWACCEL, hwaccel.DEFAULT_ENCODER)
    with pytest.raises(ConfigError, match="invalid --hwaccel 'gpu'"):
        IOConfig(hwaccel="gpu")


def test_auto_falls_back_to_software_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _compiled_with(monkeypatch, "cuda")
    monkeypatch.setattr(hwaccel, "device_opener", _fails("no CUDA-capable device is detected"))
    with caplog.at_level(logging.INFO, logger="streamanon.io.hwaccel"):
        choice = hwaccel.choose_decode("auto")
        hwaccel.choose_decode("auto")
    assert (choice.chosen, choice.hardware) == ("none", False)
    assert "no CUDA-capable device is detected" in choice.reason
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("decode: none (software; auto: cannot open the cuda device")


def test_listed_device_is_not_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hwdevices_available`` lists what FFmpeg was built with: only opening counts."""
    _compiled_with(monkeypatch, "cuda")
    monkeypatch.setattr(hwaccel, "device_opener", _fails("Operation not permitted"))
    assert not hwaccel.choose_decode("auto").hardware
    _compiled_with(monkeypatch)
    hwaccel.clear_cache()
    assert "no cuda support" in hwaccel.choose_decode("auto").reason


def test_explicit_device_that_cannot_open_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _compiled_with(monkeypatch, "cuda", "qsv")
    monkeypatch.setattr(hwaccel, "device_opener", _fails("no device"))
    with pytest.raises(ConfigError, match=r"^--hwaccel qsv: cannot open the qsv device: no device"):
        hwaccel.choose_decode("qsv")
    with pytest.raises(ConfigError, match="invalid --hwaccel 'gpu'"):
        hwaccel.choose_decode("gpu")
    assert hwaccel.choose_decode("none").reason == "--hwaccel none"


def test_stream_without_a_decoder_on_the_device() -> None:
    auto = hwaccel.HWChoice("decode", "auto", "cuda", True, "auto: cuda device opened")
    fallback = hwaccel.not_decoded_on(auto, "gif")
    assert (fallback.chosen, fallback.hardware) == ("none", False) and "no gif decoder" in fallback.reason
    explicit = hwaccel.HWChoice("decode", "cuda", "cuda", True, "cuda device opened")
    with pytest.raises(ConfigError, match="--hwaccel cuda: cuda has no gif decoder"):
        hwaccel.not_decoded_on(explicit, "gif")


def test_cli_explicit_hwaccel_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clip_factory: Callable[..., Path],
    tmp_path: Path,
) -> None:
    _compiled_with(monkeypatch, "cuda")
    monkeypatch.setattr(hwaccel, "device_opener", _fails("no CUDA-capable device is detected"))
    src, out = clip_factory("in.mp4", frames=4), tmp_path / "out.mp4"
    assert main([str(src), "-o", str(out), "-q", "--hwaccel", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("streamanon: error: --hwaccel cuda: cannot open the cuda device")
    assert not out.exists()


def test_cli_auto_runs_in_software_and_reports_why(
    monkeypatch: pytest.MonkeyPatch, clip_factory: Callable[..., Path], tmp_path: Path
) -> None:
    import json

    _compiled_with(monkeypatch, "cuda")
    monkeypatch.setattr(hwaccel, "device_opener", _fails("no CUDA-capable device is detected"))
    monkeypatch.setattr(hwaccel, "encoder_opener", _fails("Cannot load libcuda.so.1"))
    src, out, rep = clip_factory("in.mp4", frames=4), tmp_path / "out.mp4", tmp_path / "r.json"
    assert main([str(src), "-o", str(out), "-q", "--encoder", "auto", "--report", str(rep)]) == 0
    video = json.loads(rep.read_text())["summary"]["inference"]["video"]
    assert video["decode"]["chosen"] == "none" and "no CUDA-capable device" in video["decode"]["reason"]
    assert video["encode"]["chosen"] == "libx264" and "Cannot load libcuda" in video["encode"]["reason"]
    assert len(decode(out)[0]) == 4


@pytest.mark.skipif(not CLIP.is_file(), reason=f"shared clip {CLIP.name} not found (STREAMANON_DATA)")
def test_software_decode_is_unchanged_by_auto() -> None:
    """``--hwaccel auto`` where no device opens is today's software path: the same frames."""

    def frames(mode: str) -> tuple[list[np.ndarray], list[int | None], hwaccel.HWChoice | None]:
        with VideoSource(CLIP, audio=False, hwaccel=mode) as src:
            got = list(src)
            return [f.image for f in got], [f.pts for f in got], src.info.decode

    auto, auto_pts, choice = frames("auto")
    if choice is not None and choice.hardware:
        pytest.skip(f"a hardware decoder opened here ({choice.chosen}): auto is not the software path")
    none, none_pts, _ = frames("none")
    assert choice is not None and "auto:" in choice.reason
    assert len(auto) == len(none) == 275
    assert auto_pts == none_pts
    assert all(np.array_equal(a, b) for a, b in zip(auto, none, strict=True))


# -- encode -------------------------------------------------------------------------------------
def test_encoder_auto_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(hwaccel, "encoder_opener", _opens(calls))
    choice = hwaccel.choose_encoder("libx264", 1280, 720, "yuv420p", "auto")
    assert (choice.chosen, choice.hardware) == ("h264_nvenc", True) and calls == ["h264_nvenc"]
    assert hwaccel.choose_encoder("libx265", 1280, 720, "yuv420p", "auto").chosen == "hevc_nvenc"
    vp9 = hwaccel.choose_encoder("libvpx-vp9", 1280, 720, "yuv420p", "auto")
    assert (vp9.chosen, vp9.hardware) == ("libvpx-vp9", False) and "no hardware encoder tried" in vp9.reason
    assert hwaccel.choose_encoder("libx264", 64, 64, "yuv420p", "none").chosen == "libx264"
    assert hwaccel.choose_encoder("libx264", 64, 64, "yuv420p", "mpeg4").chosen == "mpeg4"  # software, by name

    hwaccel.clear_cache()
    monkeypatch.setattr(hwaccel, "encoder_opener", _fails("No capable devices found"))
    fallback = hwaccel.choose_encoder("libx264", 1280, 720, "yuv420p", "auto")
    assert (fallback.chosen, fallback.hardware) == ("libx264", False)
    assert "h264_nvenc does not open: No capable devices found" in fallback.reason
    with pytest.raises(ConfigError, match=r"^--encoder hevc_nvenc: hevc_nvenc does not open: No capable"):
        hwaccel.choose_encoder("libx264", 1280, 720, "yuv420p", "hevc_nvenc")
    with pytest.raises(ConfigError, match="invalid --encoder 'x264-turbo'"):
        hwaccel.choose_encoder("libx264", 1280, 720, "yuv420p", "x264-turbo")


def test_cli_explicit_encoder_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clip_factory: Callable[..., Path],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(hwaccel, "encoder_opener", _fails("Cannot load libcuda.so.1"))
    src, out = clip_factory("in.mp4", frames=4), tmp_path / "out.mp4"
    assert main([str(src), "-o", str(out), "-q", "--encoder", "h264_nvenc"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "streamanon: error: --encoder h264_nvenc: h264_nvenc does not open: Cannot load libcuda.so.1 "
        "(use --encoder auto or none)\n"
    )
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_sink_software_fallback_writes_what_none_writes(clip_factory: Callable[..., Path], tmp_path: Path) -> None:
    """Where no hardware encoder opens, ``--encoder auto`` writes the bytes ``none`` writes."""
    src = clip_factory("in.mp4", frames=6)
    outs = {}
    for mode in ("none", "auto"):
        with VideoSource(src, audio=False, hwaccel="none") as source:
            sink = VideoSink(tmp_path / f"{mode}.mp4", source.info, IOConfig(), encoder=mode)
            if mode == "auto" and sink.encode is not None and sink.encode.hardware:
                sink.close(commit=False)
                pytest.skip(f"a hardware encoder opened here ({sink.encode.chosen})")
            for frame in source:
                sink.write(frame, frame.image)
            sink.close()
        outs[mode] = (tmp_path / f"{mode}.mp4").read_bytes()
    assert outs["auto"] == outs["none"]


# -- live and streams -----------------------------------------------------------------------------
def test_live_specs_carry_the_choice(tmp_path: Path) -> None:
    """``--hwaccel``/``--encoder`` live in ``IOConfig`` alone; a live run's specs carry them."""
    from streamanon.cli import config_from_args, run_parser

    opts = LiveOptions()
    assert input_spec("rtsp://127.0.0.1:1/x", opts, "none").hwaccel == "none"
    assert output_spec(str(tmp_path / "o.ts"), opts, "auto").encoder == "auto"
    assert input_spec("rtsp://127.0.0.1:1/x", LiveOptions()).hwaccel == hwaccel.DEFAULT_HWACCEL
    assert not hasattr(LiveOptions(), "hwaccel") and not hasattr(LiveOptions(), "encoder")
    ns = run_parser().parse_args(["rtsp://127.0.0.1:1/x", "-o", "o.ts", "--hwaccel", "none", "--encoder", "auto"])
    assert (config_from_args(ns).io.hwaccel, config_from_args(ns).io.encoder) == ("none", "auto")
    with pytest.raises(ConfigError, match="invalid --hwaccel 'nvdec'"):
        IOConfig(hwaccel="nvdec")


def test_streams_explicit_hwaccel_fails_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streamanon.live.streams_config import parse_streams_config

    _compiled_with(monkeypatch, "cuda")
    monkeypatch.setattr(hwaccel, "device_opener", _fails("no CUDA-capable device is detected"))
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[[stream]]\nname = "door"\ninput = "rtsp://127.0.0.1:1/a"\noutput = "a.ts"\n'
        '[[stream]]\nname = "gate"\ninput = "rtsp://127.0.0.1:1/b"\noutput = "b.ts"\nhwaccel = "cuda"\n'
    )
    with pytest.raises(ConfigError, match=r"stream 'gate': --hwaccel cuda: cannot open the cuda device"):
        parse_streams_config(cfg)
    cfg.write_text(cfg.read_text().replace('hwaccel = "cuda"', 'hwaccel = "auto"'))
    specs = parse_streams_config(cfg).streams
    assert [s.input.hwaccel for s in specs] == [hwaccel.DEFAULT_HWACCEL, "auto"]


# -- the real thing (NVIDIA GPU) ------------------------------------------------------------------
def _cuda_opens() -> str | None:
    try:
        hwaccel.open_device("cuda")
    except Exception as exc:
        return str(exc)
    return None


@pytest.mark.gpu
@pytest.mark.skipif(not CLIP.is_file(), reason=f"shared clip {CLIP.name} not found (STREAMANON_DATA)")
def test_nvdec_frames_match_software() -> None:  # pragma: no cover - GPU only
    why = _cuda_opens()
    if why:
        pytest.skip(f"no CUDA device opens here ({why}): NVDEC not testable")
    with VideoSource(CLIP, audio=False, hwaccel="cuda") as src:
        assert src.info.decode is not None and src.info.decode.hardware
        hw_frames = [f.image for f in src]
    with VideoSource(CLIP, audio=False, hwaccel="none") as src:
        sw_frames = [f.image for f in src]
    assert len(hw_frames) == len(sw_frames)
    assert all(a.dtype == np.uint8 and a.shape == b.shape for a, b in zip(hw_frames, sw_frames, strict=True))
    # H.264 decoding is exact; only the nv12 -> RGB conversion path may differ by rounding
    worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(hw_frames, sw_frames, strict=True))
    assert worst <= 2


@pytest.mark.gpu
def test_nvenc_writes_a_decodable_file(
    clip_factory: Callable[..., Path], tmp_path: Path
) -> None:  # pragma: no cover - GPU only
    src = clip_factory("in.mp4", frames=10)
    choice = hwaccel.choose_encoder("libx264", 320, 240, "yuv420p", "auto")
    if not choice.hardware:
        pytest.skip(f"no NVENC here: {choice.reason}")
    with VideoSource(src, audio=False, hwaccel="none") as source:
        sink = VideoSink(tmp_path / "o.mp4", source.info, IOConfig(), encoder="h264_nvenc")
        originals = []
        for frame in source:
            sink.write(frame, frame.image)
            originals.append(frame.image)
        sink.close()
    frames, _, _ = decode(tmp_path / "o.mp4")
    assert len(frames) == 10
    mse = np.mean([(a.astype(float) - b.astype(float)) ** 2 for a, b in zip(frames, originals, strict=True)])
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30
