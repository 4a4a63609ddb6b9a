"""Video sources through PyAV: frames with their own timestamps, plus audio packets to remux.

A source yields ``Frame`` objects in presentation order. Packets of other streams (audio)
are attached to the frame they follow in the file, so that a sink can remux them
bit-exactly in the original interleaving without a second pass over the input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, DecodeError, SourceOpenError, SourceTimeoutError
from ..types import Frame
from . import hwaccel as hw
from .uri import redact

log = logging.getLogger(__name__)

# A decoder that fails on more than this many packets in a row is not "a few corrupt
# packets" any more: the stream is unusable.
MAX_CONSECUTIVE_DECODE_ERRORS = 50

STDIN = "-"


def drops_frames(uri: str | None, live: bool = False) -> bool:
    """Whether a live-mode input may drop frames when processing falls behind.

    A camera or a network feed produces frames in real time whether or not they are read:
    keeping up means keeping the newest frame. Standard input is read at the reader's
    pace: a redirected file (``< x.mp4``) or a pipe (``cat x.mp4 |``) blocks its writer
    until the frames are read, so dropping loses frames for nothing (50 of a clip's 51
    were lost that way). Stdin therefore never drops unless ``live`` (``--live``: the
    pipe is fed by a real-time producer, e.g. ``ffmpeg -i rtsp://... -f mpegts -``);
    ``--no-drop`` turns dropping off for every input.

    Args:
        uri: the input as given (``-`` for stdin); None when unknown.
        live: the user said the input is a real-time feed (``--live``).

    Returns:
        True when frames may be dropped.
    """
    return uri != STDIN or live


def rotation_turns(rotation: int) -> int:
    """Quarter turns (counter-clockwise, as ``np.rot90``) that show a frame upright."""
    return (round(rotation / 90) % 4) if rotation else 0


@dataclass
class SourceInfo:
    """What a sink needs to reproduce the input's geometry, timing and extra streams."""

    uri: str
    format_name: str
    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    frames: int  # container's frame count, else estimated from duration x rate, 0 if unknown
    duration: float | None
    rotation: int  # degrees, from the display matrix
    codec: str
    audio_streams: list[Any] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    stream_metadata: dict[str, str] = field(default_factory=dict)
    live: bool = False
    decode: hw.HWChoice | None = None  # how the video is decoded (--hwaccel), and why


@dataclass
class SourceStats:
    frames: int = 0
    decode_errors: int = 0
    audio_packets: int = 0


def _av_open(
    uri: str,
    options: dict[str, str] | None,
    timeout: tuple[float, float] | None,
    fmt: str | None,
    accel: Any = None,
) -> Any:
    try:
        return av.open(uri, mode="r", format=fmt, options=options or {}, timeout=timeout, hwaccel=accel)
    except FileNotFoundError as exc:
        raise SourceOpenError(f"input not found: {redact(uri)}", source=uri) from exc
    except PermissionError as exc:
        raise SourceOpenError(f"input not readable (permission denied): {redact(uri)}", source=uri) from exc
    except IsADirectoryError as exc:
        raise SourceOpenError(f"input is a directory: {redact(uri)}", source=uri) from exc
    except av.error.ExitError as exc:  # timeouts surface as "Immediate exit requested"
        raise SourceTimeoutError(f"timed out opening {redact(uri)}", source=uri) from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SourceOpenError(f"cannot open {redact(uri)} as media: {reason}", source=uri) from exc


class VideoSource:
    """Decode the first video stream of ``uri`` into RGB ``Frame``s.

    Args:
        uri: file path or URL PyAV can open.
        options: FFmpeg demuxer options (``rtsp_transport``, ...).
        timeout: ``(open_s, read_s)`` for network inputs.
        audio: also demux audio streams and attach their packets to frames.
        fmt: force an input format (``v4l2``, ``mpegts``...).
        live: the source is a live feed (affects only ``info.live``; policies live in the pipeline).
        hwaccel: ``--hwaccel`` (``auto``, ``none`` or a device, ``io.hwaccel``); the choice is
            ``info.decode``.
        start, duration: only the frames from ``start`` seconds (from the video's first
            frame) for ``duration`` seconds (``None``: to the end), with the audio packets
            of that span; timestamps start at 0 at the first frame yielded (``--start``,
            ``--duration``).

    Raises:
        ConfigError: a hardware device asked for by name cannot decode this input, or
            ``start`` is at or past the end of the video.
    """

    def __init__(
        self,
        uri: str | Path,
        *,
        options: dict[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        audio: bool = True,
        fmt: str | None = None,
        live: bool = False,
        hwaccel: str = hw.DEFAULT_HWACCEL,
        start: float = 0.0,
        duration: float | None = None,
    ) -> None:
        self.uri = str(uri)
        self.stats = SourceStats()
        self._start = max(0.0, float(start))
        self._end = None if duration is None else self._start + float(duration)
        self._span = self._start > 0 or self._end is not None
        self._offset: int | None = None  # pts of the first frame yielded (span: shifted to 0)
        decode = hw.choose_decode(hwaccel)
        self._container = _av_open(self.uri, options, timeout, fmt, hw.decode_accel(decode))
        try:
            if not self._container.streams.video:
                raise SourceOpenError(f"no video stream in {redact(self.uri)}", source=self.uri)
            self._video = self._container.streams.video[0]
            self._video.thread_type = "AUTO"
            cc = self._video.codec_context
            if not cc.width or not cc.height:
                raise SourceOpenError(f"video stream of {redact(self.uri)} has no frame size", source=self.uri)
            if decode.hardware and not cc.is_hwaccel:
                decode = hw.not_decoded_on(decode, cc.name)
            self._audio = list(self._container.streams.audio) if audio else []
            frames = int(self._video.frames or 0)
            self.frames_exact = frames > 0
            self.info = SourceInfo(
                uri=self.uri,
                format_name=self._container.format.name,
                width=cc.width,
                height=cc.height,
                time_base=self._video.time_base or Fraction(1, 90000),
                average_rate=self._video.average_rate or self._video.guessed_rate,
                frames=frames,
                duration=(float(self._container.duration) / 1e6) if self._container.duration else None,
                rotation=0,
                codec=cc.name,
                audio_streams=self._audio,
                metadata=dict(self._container.metadata),
                stream_metadata=dict(self._video.metadata),
                live=live,
                decode=decode,
            )
            if not frames:
                self.info.frames = self._estimate_frames()
            if self._span:
                self._apply_span()
        except BaseException:
            self._container.close()
            raise

    def _estimate_frames(self) -> int:
        """Frame count from the declared duration (MKV/WebM/TS store no frame count)."""
        rate = self.info.average_rate
        dur = None
        if self._video.duration and self._video.time_base:
            dur = float(self._video.duration * self._video.time_base)
        elif self.info.duration:
            dur = self.info.duration
        if not rate or not dur:
            return 0
        return round(dur * float(rate))

    def _apply_span(self) -> None:
        """Expected frames and duration of the ``start``/``duration`` span."""
        total = self.info.duration
        if total is not None and self._start >= total:
            raise ConfigError(f"--start {self._start:g} s is at or past the end of {redact(self.uri)} ({total:.2f} s)")
        rate = self.info.average_rate
        end = self._end if total is None or self._end is None else min(self._end, total)
        if total is not None or end is not None:
            span = (end if end is not None else total or 0.0) - self._start
            self.info.duration = max(0.0, span)
            if rate:
                n = round(self.info.duration * float(rate))
                self.info.frames = min(n, self.info.frames) if self.info.frames else n
        self.frames_exact = False

    # -- iteration -----------------------------------------------------------------
    def _seconds(self, pts: int | None, time_base: Fraction | None) -> float | None:
        """Seconds from the video's first frame (its stream's start time) of ``pts``."""
        if pts is None or not time_base:
            return None
        base = self._video.start_time or 0
        return float(pts * time_base) - float(base * self._video.time_base)

    def _seek_to_start(self) -> None:
        """Jump to the keyframe at or before ``start`` (the frames before it are decoded and dropped)."""
        tb = self._video.time_base
        if not tb:
            return
        target = int(self._start / tb) + int(self._video.start_time or 0)
        try:
            self._container.seek(target, stream=self._video, backward=True, any_frame=False)
        except (av.error.FFmpegError, OSError) as exc:  # not seekable: decode from the beginning
            log.debug("seek to %.3f s failed on %s: %s", self._start, redact(self.uri), exc)

    def _in_span(self, packets: list[Any]) -> list[Any]:
        """The audio packets of the span, shifted as the video is (to start at 0)."""
        kept = []
        # the first yielded frame's time on the container's clock: every stream shifts by it
        offset_s = float((self._offset or 0) * self._video.time_base)
        for p in packets:
            t = self._seconds(p.pts if p.pts is not None else p.dts, p.time_base)
            if t is None or t < self._start - 1e-6 or (self._end is not None and t >= self._end - 1e-6):
                continue
            shift = round(offset_s / p.time_base)
            p.pts = None if p.pts is None else p.pts - shift
            p.dts = None if p.dts is None else p.dts - shift
            if p.dts is not None and p.dts < 0:
                continue
            kept.append(p)
        return kept

    def _decoded(self) -> Iterator[tuple[str, Any]]:
        """Yield ('frame', av.VideoFrame) and ('packet', av.Packet) in file order."""
        consecutive = 0
        if self._start > 0:
            self._seek_to_start()
        streams = [self._video, *self._audio]
        demux = self._container.demux(*streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.ExitError as exc:
                raise SourceTimeoutError(f"read timed out on {redact(self.uri)}", source=self.uri) from exc
            except (av.error.FFmpegError, OSError) as exc:
                # A broken container mid-file: end of what can be read.
                self.stats.decode_errors += 1
                log.warning("demux stopped on %s: %s", redact(self.uri), exc)
                break
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    self.stats.audio_packets += 1
                    yield "packet", packet
                continue
            try:
                frames = packet.decode()
                consecutive = 0
            except av.error.FFmpegError as exc:
                self.stats.decode_errors += 1
                consecutive += 1
                log.debug("decode error on %s: %s", redact(self.uri), exc)
                if consecutive > MAX_CONSECUTIVE_DECODE_ERRORS:
                    raise DecodeError(f"{redact(self.uri)}: video stream is corrupt ({exc})", source=self.uri) from exc
                continue
            for frame in frames:
                yield "frame", frame

    def __iter__(self) -> Iterator[Frame]:
        # Frame i carries the packets that follow it in the file (and the first frame also
        # those before it), so one frame of look-ahead is buffered.
        pending: av.VideoFrame | None = None
        carry: list[Any] = []
        step = self._default_step()
        index = 0
        last_pts: int | None = None
        first = True
        for kind, obj in self._decoded():
            if kind == "packet":
                carry.append(obj)
                continue
            if first:
                self.info.rotation = int(getattr(obj, "rotation", 0) or 0)
                first = False
            if self._span:
                t = self._seconds(obj.pts, self._video.time_base)
                if t is not None and t < self._start - 1e-6:
                    continue  # before the span (decoded from the keyframe before it)
                if t is not None and self._end is not None and t >= self._end - 1e-6:
                    break
                if self._offset is None:
                    self._offset = obj.pts
            if pending is not None:
                frame = self._to_frame(pending, index, carry, step, last_pts)
                last_pts, carry = frame.pts, []
                index += 1
                yield frame
            pending = obj
        if pending is not None:
            yield self._to_frame(pending, index, carry, step, last_pts)

    def _default_step(self) -> int:
        rate = self.info.average_rate
        if rate:
            return max(1, round(1 / (rate * self.info.time_base)))
        return 1

    def _to_frame(self, vf: av.VideoFrame, index: int, packets: list[Any], step: int, last_pts: int | None) -> Frame:
        pts = vf.pts
        if pts is not None and self._span and self._offset is not None:
            pts -= self._offset
        if self._span:
            packets = self._in_span(packets)
        if pts is None:
            pts = 0 if last_pts is None else last_pts + step
        self.stats.frames += 1
        image: NDArray[np.uint8] = np.asarray(vf.to_ndarray(format="rgb24"), np.uint8)
        k = rotation_turns(self.info.rotation)
        if k:
            # Stages see the picture upright (as players show it); the sink turns it back
            # and keeps the display matrix, so the coded size is unchanged.
            image = np.ascontiguousarray(np.rot90(image, k))
        return Frame(
            image=image,
            index=index,
            pts=int(pts),
            time_base=self.info.time_base,
            packets=tuple(packets),
            wallclock=time.monotonic(),
        )

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
