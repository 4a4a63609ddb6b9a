"""Encode anonymised frames with PyAV and remux the source's audio untouched.

Files are written to a hidden temp file beside the target and renamed into place only by
``close(commit=True)``, so a crash never leaves a complete-looking output.
"""

from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from ..config import IOConfig
from ..errors import ConfigError, SinkError
from ..types import Frame
from . import hwaccel as hw
from .source import SourceInfo, rotation_turns
from .uri import redact

log = logging.getLogger(__name__)

# Encoder picked when --codec is not given, by output extension (libx264 elsewhere).
DEFAULT_CODEC_BY_EXT = {".webm": "libvpx-vp9", ".gif": "gif", ".ogv": "libtheora"}


def temp_path_for(target: Path) -> Path:
    """The hidden temp file a target is written to before the final rename."""
    return target.with_name(f".{target.stem}.streamanon-partial{target.suffix}")


def _pix_fmt(codec: av.codec.Codec, width: int, height: int) -> str:
    formats = [f.name for f in (codec.video_formats or [])]
    if codec.name == "gif":
        return "pal8" if "pal8" in formats else formats[0]
    even = width % 2 == 0 and height % 2 == 0
    # 4:2:0 needs even sizes; for odd sizes keep the exact size with 4:4:4.
    for fmt in (["yuv420p"] if even else []) + ["yuv444p", "yuv420p"]:
        if not formats or fmt in formats:
            return fmt
    return formats[0]


def _encoder_options(codec_name: str, config: IOConfig, live: bool) -> dict[str, str]:
    """Quality and latency options of ``codec_name`` from ``--crf``/``--preset`` (live: no delay)."""
    options: dict[str, str] = {}
    if codec_name in ("libx264", "libx265"):
        options = {"crf": str(config.crf), "preset": config.preset}
        if live:
            options.update({"tune": "zerolatency", "bf": "0"})
    elif codec_name.startswith("libvpx"):
        options = {"crf": str(min(63, config.crf + 13)), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    elif codec_name.endswith("_nvenc"):
        # constant quality at --crf's value (NVENC's cq scale is not x264's: sizes differ)
        options = {"preset": "p4", "rc": "vbr", "cq": str(config.crf), "b": "0"}
        if live:
            options.update({"tune": "ll", "zerolatency": "1", "bf": "0"})
    return options


class VideoSink:
    """Write frames to ``target`` with the geometry and timing of ``info``.

    Args:
        target: output path (a file) or URL (live outputs write in place).
        info: the source description (size, time base, rate, rotation, audio streams).
        config: codec, quality, metadata and audio options.
        fmt: force a container format (``mpegts``, ``rtsp``...).
        live: low-latency encoder settings (no B-frames, zerolatency).
        atomic: write to a temp file and rename on success.
        encoder: ``--encoder`` (``none``: ``config.codec``; ``auto``; an encoder's name;
            None: ``config.encoder``); the choice is ``self.encode``.

    Raises:
        ConfigError: an unknown encoder, or a hardware encoder asked for by name that cannot open.
        SinkError: the target cannot be written.
    """

    def __init__(
        self,
        target: str | Path,
        info: SourceInfo,
        config: IOConfig,
        *,
        fmt: str | None = None,
        live: bool = False,
        atomic: bool = True,
        container_options: dict[str, str] | None = None,
        encoder: str | None = None,
    ) -> None:
        self.target = str(target)
        self.info = info
        self.config = config
        self.frames_written = 0
        self.audio_packets = 0
        self._last_pts: int | None = None
        self._requested_encoder = encoder if encoder is not None else config.encoder
        self.encode: hw.HWChoice | None = None
        self._atomic = atomic
        self._path = temp_path_for(Path(self.target)) if atomic else None
        open_target = str(self._path) if self._path else self.target
        if self._path is None:
            ext = ""
        else:
            ext = Path(self.target).suffix.lower()
        # bitexact: no random segment ids (MKV) or version strings in the container. The
        # video bytes can still differ between runs of the same frames: x264's macroblock
        # tree reads memory it never wrote (docs/methods.md, *Reproducible runs*).
        options = {"fflags": "+bitexact", **(container_options or {})}
        self._out: Any  # av's OutputContainer; None once closed
        self._video: Any  # its VideoStream
        try:
            self._out = av.open(open_target, mode="w", format=fmt, options=options)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SinkError(f"cannot write {redact(self.target)}: {reason}") from exc
        try:
            self._setup_video(ext, live)
            self._setup_audio()
            if config.keep_metadata:
                self._out.metadata.update(info.metadata)
        except BaseException:
            self._abort()
            raise

    def _setup_video(self, ext: str, live: bool) -> None:
        codec_name = self.config.codec
        if codec_name == "libx264" and ext in DEFAULT_CODEC_BY_EXT:
            codec_name = DEFAULT_CODEC_BY_EXT[ext]
        try:
            codec = av.codec.Codec(codec_name, "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"unknown or unavailable encoder {codec_name!r}") from exc
        width, height = self.info.width, self.info.height
        self.encode = hw.choose_encoder(
            codec_name, width, height, _pix_fmt(codec, width, height), self._requested_encoder
        )
        if self.encode.chosen != codec_name:
            codec_name = self.encode.chosen
            codec = av.codec.Codec(codec_name, "w")
        rate = self.info.average_rate or Fraction(25, 1)
        options = _encoder_options(codec_name, self.config, live)
        options.update(dict(self.config.encoder_options))
        try:
            stream = self._out.add_stream(codec_name, rate=rate, options=options, hwaccel=hw.encode_accel(codec_name))
        except (av.error.FFmpegError, ValueError) as exc:
            raise SinkError(f"cannot add a {codec_name} stream to {redact(self.target)}: {exc}") from exc
        stream.width = self.info.width
        stream.height = self.info.height
        stream.pix_fmt = _pix_fmt(codec, self.info.width, self.info.height)
        if hw.hw_pix_fmt(stream.pix_fmt):  # an encoder of device frames: PyAV uploads nv12
            stream.pix_fmt = "nv12"
        # Keep the source's time base so every pts is carried over exactly (VFR stays VFR).
        stream.time_base = self.info.time_base
        stream.codec_context.time_base = self.info.time_base
        if live or ext == ".avi":
            # Live: no reordering delay. AVI stores no presentation times, so B-frames
            # would shift every timestamp by the reorder delay.
            stream.codec_context.max_b_frames = 0
        if self.info.rotation:
            stream.set_display_rotation(self.info.rotation)
        if self.config.keep_metadata:
            stream.metadata.update(self.info.stream_metadata)
        self._video = stream

    def _setup_audio(self) -> None:
        self._audio_map: dict[int, Any] = {}
        if not self.config.audio:
            return
        for in_stream in self.info.audio_streams:
            try:
                out_stream = self._out.add_stream_from_template(in_stream)
            except (av.error.FFmpegError, ValueError) as exc:
                raise SinkError(
                    f"audio codec {in_stream.codec_context.name} cannot be copied into {redact(self.target)}: "
                    "use another output format or --no-audio"
                ) from exc
            if not self.config.keep_metadata:
                out_stream.metadata.clear()
                # Language is not identifying and players need it to label tracks.
                lang = in_stream.metadata.get("language")
                if lang:
                    out_stream.metadata["language"] = lang
            self._audio_map[in_stream.index] = out_stream

    # -- writing -------------------------------------------------------------------
    def write(self, frame: Frame, image: NDArray[np.uint8]) -> None:
        """Encode ``image`` with ``frame``'s timestamp, then remux ``frame.packets``."""
        pts = frame.pts if frame.pts is not None else self.frames_written
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders need strictly increasing pts
        self._last_pts = pts
        k = rotation_turns(self.info.rotation)
        if k:
            image = np.rot90(image, -k)  # back to the coded orientation
        vf = self._video_frame(np.ascontiguousarray(image))
        vf.pts = pts
        vf.time_base = self.info.time_base
        try:
            for packet in self._video.encode(vf):
                self._out.mux(packet)
            self.frames_written += 1
            for packet in frame.packets:
                out_stream = self._audio_map.get(packet.stream.index)
                if out_stream is None or packet.dts is None:
                    continue
                packet.stream = out_stream
                self._out.mux(packet)
                self.audio_packets += 1
        except (av.error.FFmpegError, OSError) as exc:
            raise SinkError(f"writing {redact(self.target)} failed: {exc}") from exc

    def _video_frame(self, image: NDArray[np.uint8]) -> av.VideoFrame:
        if self._video.pix_fmt != "pal8":
            return av.VideoFrame.from_ndarray(image, format="rgb24")
        # GIF: an adaptive palette per frame (swscale has no RGB -> pal8 path).
        from PIL import Image

        q = Image.fromarray(image).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        rgb = np.asarray(q.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
        palette = np.zeros((256, 4), np.uint8)
        palette[:, 0] = 255  # PyAV takes (256, 4) ARGB rows
        palette[: len(rgb), 1:] = rgb
        planes: Any = [np.asarray(q), palette]
        return av.VideoFrame.from_ndarray(planes, format="pal8")

    def close(self, commit: bool = True, target: str | Path | None = None) -> None:
        """Flush the encoder and finish the file; rename into place if ``commit``.

        ``target``: the name the finished file takes instead of the sink's target (an
        incomplete output goes to ``NAME.partial.EXT``, never the final name).
        """
        if self._out is None:
            return
        if not commit:
            self._abort()
            return
        try:
            for packet in self._video.encode(None):
                self._out.mux(packet)
            self._out.close()
        except (av.error.FFmpegError, OSError) as exc:
            self._abort()
            raise SinkError(f"finishing {redact(self.target)} failed: {exc}") from exc
        self._out = None
        if self._path is not None:
            os.replace(self._path, str(target) if target is not None else self.target)

    def _abort(self) -> None:
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
