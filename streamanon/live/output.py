"""Live outputs: network push (RTSP/RTMP/UDP/SRT), stdout, one file, or rolling segment files.

Every output is encoded with low-latency settings (``VideoSink(live=True)``: no B-frames,
zerolatency; a keyframe every two seconds so players can join) and wall-clock timestamps:
a frame's pts is the time it was decoded, relative to the start of its file or session.
Files and segments are written atomically (hidden temp file, renamed when complete).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import IOConfig
from ..errors import SinkError
from ..io import SourceInfo, VideoSink, redact
from ..io.hwaccel import HWChoice
from ..types import Frame
from .endpoints import OutputSpec
from .metrics import LiveMetrics
from .source import Backoff

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)
KEYFRAME_SECONDS = 2.0


@dataclass(frozen=True)
class Geometry:
    """Size, nominal rate and display rotation of the output stream."""

    width: int
    height: int
    fps: float
    rotation: int = 0


def live_io_config(io: IOConfig, fps: float) -> IOConfig:
    """``io`` without audio and with a keyframe every ``KEYFRAME_SECONDS`` unless set by the user."""
    opts = dict(io.encoder_options)
    if not {"g", "x264-params", "x265-params"} & opts.keys():
        opts["g"] = str(max(1, round(KEYFRAME_SECONDS * fps)))
    return dataclasses.replace(io, audio=False, encoder_options=tuple(opts.items()))


def fit(image: NDArray[np.uint8], geometry: Geometry) -> NDArray[np.uint8]:
    """``image`` resized to the output size (an input may reconnect at another resolution)."""
    if image.shape[0] == geometry.height and image.shape[1] == geometry.width:
        return image
    out = cv2.resize(image, (geometry.width, geometry.height), interpolation=cv2.INTER_AREA)
    return np.asarray(out, dtype=np.uint8)


class _Encoder:
    """One ``VideoSink`` whose timestamps count from its first frame."""

    def __init__(self, target: str, spec: OutputSpec, geometry: Geometry, io: IOConfig, atomic: bool) -> None:
        info = SourceInfo(
            uri=target,
            format_name="",
            width=geometry.width,
            height=geometry.height,
            time_base=TIME_BASE,
            average_rate=Fraction(geometry.fps).limit_denominator(1001),
            frames=0,
            duration=None,
            rotation=geometry.rotation,
            codec="",
            live=True,
        )
        self.target = target
        self.sink = VideoSink(
            target,
            info,
            io,
            fmt=spec.fmt,
            live=True,
            atomic=atomic,
            container_options=dict(spec.options),
            encoder=spec.encoder,
        )
        self.t0: float | None = None
        self.frames = 0

    def write(self, image: NDArray[np.uint8], t: float) -> None:
        if self.t0 is None:
            self.t0 = t
        pts = max(0, round((t - self.t0) / TIME_BASE))
        self.sink.write(Frame(image, self.frames, pts=pts, time_base=TIME_BASE), image)
        self.frames += 1

    def close(self, commit: bool) -> None:
        self.sink.close(commit=commit and self.frames > 0)


class LiveOutput:
    """Write anonymised frames to ``spec``; opened at the first frame (which fixes the size).

    Network outputs that fail are reopened with backoff (frames meanwhile are dropped,
    never queued); stdout and file outputs fail with ``SinkError``.

    Args:
        spec: where to write.
        io: encoder settings (see ``live_io_config``).
        metrics: counters (output errors, segments).
        segment: seconds per file for ``segments`` outputs.
        reconnect: reopen failed network outputs.
        backoff: delays between reopen attempts.
    """

    def __init__(
        self,
        spec: OutputSpec,
        io: IOConfig,
        metrics: LiveMetrics,
        *,
        segment: float | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        self.spec = spec
        self.io = io
        self.metrics = metrics
        self.segment = segment
        self.reconnect = reconnect and spec.kind == "stream"
        self.backoff = backoff or Backoff()
        self.geometry: Geometry | None = None
        self.segments: list[str] = []  # completed segment files
        self.frames = 0
        self.encode: HWChoice | None = None  # the encoder chosen at the first open (--encoder)
        self._enc: _Encoder | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._seg_index = 0

    @property
    def opened(self) -> bool:
        return self.geometry is not None

    def write(self, image: NDArray[np.uint8], t: float, geometry: Geometry) -> bool:
        """Encode ``image`` decoded at monotonic time ``t``; False if dropped (output down)."""
        if self.geometry is None:
            self.geometry = geometry
        image = fit(image, self.geometry)
        if self.spec.kind == "segments" and self._enc is not None and self._enc.t0 is not None:
            if t - self._enc.t0 >= (self.segment or 0):
                self._finish_segment()
        enc = self._enc or self._open(self.geometry)
        if enc is None:
            return False
        try:
            enc.write(image, t)
        except SinkError as exc:
            self._failed(exc)
            return False
        self.frames += 1
        return True

    def _open(self, geometry: Geometry) -> _Encoder | None:
        if time.monotonic() < self._retry_at:
            return None
        target = self.spec.target if self.spec.kind != "segments" else self._segment_name()
        try:
            self._enc = _Encoder(target, self.spec, geometry, self.io, atomic=self.spec.kind in ("file", "segments"))
        except SinkError as exc:
            self._failed(exc)
            return None
        self.encode = self.encode or self._enc.sink.encode
        log.info("writing %s", target if self.spec.kind == "segments" else self.spec.redacted)
        return self._enc

    def _failed(self, exc: SinkError) -> None:
        self.metrics.inc("output_errors")
        if self._enc is not None:
            self._enc.close(commit=False)
            self._enc = None
        if not self.reconnect:
            raise exc
        self._failures += 1
        delay = self.backoff.delay(self._failures)
        self._retry_at = time.monotonic() + delay
        log.warning("output %s failed (%s); reopening in %.1f s", self.spec.redacted, redact(str(exc)), delay)

    def _segment_name(self) -> str:
        pattern = self.spec.target
        self._seg_index += 1
        if "%" in pattern:
            name = Path(time.strftime(pattern, time.localtime()))
        else:
            p = Path(pattern)
            name = p.with_name(f"{p.stem}-{self._seg_index:05d}{p.suffix}")
        candidate, k = name, 0
        while candidate.exists() or str(candidate) in self.segments:
            k += 1
            candidate = name.with_name(f"{name.stem}-{k}{name.suffix}")
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create folder {candidate.parent}: {exc.strerror}") from exc
        return str(candidate)

    def _finish_segment(self) -> None:
        enc, self._enc = self._enc, None
        if enc is None:
            return
        enc.close(commit=True)
        if enc.frames:
            self.segments.append(enc.target)
            self.metrics.inc("segments")
            log.info("segment complete: %s (%d frames)", enc.target, enc.frames)

    def close(self, commit: bool = True) -> None:
        """Finish the output: flush the encoder and commit (rename) files that hold frames."""
        if self._enc is None:
            return
        if self.spec.kind == "segments":
            if commit:
                self._finish_segment()
                return
        enc, self._enc = self._enc, None
        try:
            enc.close(commit=commit)
        except SinkError:
            if self.spec.kind in ("file", "segments"):
                raise
            log.warning("closing %s failed", self.spec.redacted)  # a dead server: nothing to finalise
