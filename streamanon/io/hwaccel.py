"""Hardware video decode and encode through PyAV, chosen at run time.

``--hwaccel`` (decode): ``none`` decodes in software as always; a device name (``cuda``,
``qsv``, ``vaapi``...) must open or the run stops with a one-line error (exit 2); ``auto``
(the default) tries NVDEC (``cuda``) once per process, by opening the device, and
otherwise decodes in software. ``hwdevices_available()`` lists what the FFmpeg build was
compiled with, not what the machine has (it lists cuda on machines without a GPU), so a
device counts as present only once it has actually been opened. Hardware-decoded frames
are downloaded to system memory by PyAV and converted to the same RGB arrays as software
frames, so nothing after the source changes.

``--encoder`` (encode): ``none`` (the default) is the software encoder ``--codec`` names,
as always; ``auto`` tries the hardware encoders of ``--codec``'s format (``h264_nvenc``
for libx264, ``hevc_nvenc`` for libx265) by opening one at the output's size, else uses
``--codec``; a name is that encoder, which must open (else exit 2). Why encode defaults
to ``none`` while decode defaults to ``auto``: a decoder's output is specified to the bit
(H.264/HEVC decoding is exact), so NVDEC frames are the software decoder's frames, while
an encoder picks its own trade-off: NVENC at ``cq`` N is not libx264 at ``crf`` N, and
outputs would change size, quality and bytes depending on the machine they ran on.

Every choice is logged once (``-v``); the source and sink that made it keep it
(``SourceInfo.decode``, ``VideoSink.encode``) for the run/live report.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av
import av.error

from ..config import DECODE_DEVICES as DECODE_DEVICES  # re-exported: validation lives in config (below io)
from ..config import check_encoder as check_encoder
from ..config import check_hwaccel as check_hwaccel
from ..errors import ConfigError

log = logging.getLogger(__name__)

# What ``--hwaccel auto`` tries, in order: NVDEC, the decoder of the many-feeds GPU deployments.
# (VAAPI/QSV on integrated GPUs are often slower than software for one 1080p feed once the
# frames are downloaded; they stay one explicit flag away.)
AUTO_DECODE = ("cuda",)
# ``--encoder auto``: hardware encoders tried for a software ``--codec``, in order.
AUTO_ENCODERS: dict[str, tuple[str, ...]] = {
    "libx264": ("h264_nvenc",),
    "libx265": ("hevc_nvenc",),
}
# Device an encoder needs a hardware context of (uploading frames); others take system memory.
_ENCODER_DEVICE = {"vaapi": "vaapi"}
DEFAULT_HWACCEL = "auto"
DEFAULT_ENCODER = "none"
# Codec a decode device is opened with to prove it exists (the device is codec-independent).
_PROBE_CODEC = "h264"
_HW_PIX_FMTS = {"cuda", "qsv", "vaapi", "vdpau", "drm_prime", "vulkan", "d3d11", "dxva2_vld", "videotoolbox_vld"}


@dataclass(frozen=True)
class HWChoice:
    """What ``--hwaccel``/``--encoder`` resolved to, and why (one line)."""

    kind: str  # decode | encode
    requested: str
    chosen: str  # decode: a device or "none" (software); encode: the encoder's name
    hardware: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def report(decode: HWChoice | None, encode: HWChoice | None) -> dict[str, Any]:
        """The run/live report's entry: ``{"decode": {...}, "encode": {...}}``, those made."""
        return {k: c.to_dict() for k, c in (("decode", decode), ("encode", encode)) if c is not None}

    def line(self) -> str:
        what = "hardware" if self.hardware else "software"
        return f"{self.kind}: {self.chosen} ({what}; {self.reason})"


# -- each distinct choice is logged once per process ------------------------------------------
_logged: set[str] = set()
_lock = threading.Lock()


def _record(choice: HWChoice) -> HWChoice:
    line = choice.line()
    with _lock:
        new = line not in _logged
        _logged.add(line)
    if new:
        log.info("%s", line)
    return choice


def _why(exc: BaseException) -> str:
    """One line: FFmpeg's message and its last log line ("[CUDA] Could not dynamically load CUDA")."""
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__
    return text.splitlines()[0]


# -- openers: the only code that touches devices (tests replace these two) -------------------------
def open_device(device: str) -> None:
    """Open ``device`` for decoding (raises when it cannot be opened)."""
    av.codec.hwaccel.HWAccel(device, allow_software_fallback=True).create(av.codec.Codec(_PROBE_CODEC, "r"))


def open_encoder(name: str, width: int, height: int, pix_fmt: str) -> None:
    """Open encoder ``name`` at ``width`` x ``height`` once and close it (raises when it cannot)."""
    cc: Any = av.codec.CodecContext.create(name, "w", hwaccel=encode_accel(name))
    cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
    cc.time_base = Fraction(1, 25)
    cc.framerate = Fraction(25, 1)
    cc.open()
    cc.close()


device_opener: Callable[[str], None] = open_device
encoder_opener: Callable[[str, int, int, str], None] = open_encoder


@functools.lru_cache(maxsize=32)
def _probe_device(device: str, opener: Callable[[str], None]) -> str | None:
    """None when ``device`` opens, else why not (once per process and opener)."""
    if device not in av.codec.hwaccel.hwdevices_available():
        return f"this FFmpeg build has no {device} support"
    try:
        opener(device)
    except Exception as exc:  # FFmpeg, NotImplementedError (no config), RuntimeError...
        return f"cannot open the {device} device: {_why(exc)}"
    return None


@functools.lru_cache(maxsize=64)
def _probe_encoder(
    name: str, width: int, height: int, pix_fmt: str, opener: Callable[[str, int, int, str], None]
) -> str | None:
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return f"this FFmpeg has no {name} encoder"
    try:
        opener(name, width, height, pix_fmt)
    except Exception as exc:
        return f"{name} does not open: {_why(exc)}"
    return None


def clear_cache() -> None:
    """Forget probes and logged choices (tests)."""
    _probe_device.cache_clear()
    _probe_encoder.cache_clear()
    with _lock:
        _logged.clear()


# -- choices -----------------------------------------------------------------------------------------
def choose_decode(requested: str = DEFAULT_HWACCEL) -> HWChoice:
    """Resolve ``--hwaccel``: the device to decode on, or software.

    Raises:
        ConfigError: an unknown value, or a device asked for by name that cannot be opened.
    """
    requested = check_hwaccel(requested)
    if requested == "none":
        return _record(HWChoice("decode", "none", "none", False, "--hwaccel none"))
    if requested != "auto":
        why = _probe_device(requested, device_opener)
        if why:
            raise ConfigError(f"--hwaccel {requested}: {why} (use --hwaccel auto or none)")
        return _record(HWChoice("decode", requested, requested, True, f"{requested} device opened"))
    reasons = []
    for device in AUTO_DECODE:
        why = _probe_device(device, device_opener)
        if why is None:
            return _record(HWChoice("decode", "auto", device, True, f"auto: {device} device opened"))
        reasons.append(why)
    return _record(HWChoice("decode", "auto", "none", False, "auto: " + "; ".join(reasons)))


def not_decoded_on(choice: HWChoice, codec: str) -> HWChoice:
    """The stream's codec has no decoder on ``choice``'s device: software for ``auto``.

    Raises:
        ConfigError: the device was asked for by name.
    """
    why = f"{choice.chosen} has no {codec} decoder in this FFmpeg"
    if choice.requested != "auto":
        raise ConfigError(f"--hwaccel {choice.requested}: {why} (use --hwaccel auto or none)")
    return _record(HWChoice("decode", choice.requested, "none", False, f"auto: {why}"))


def hw_pix_fmt(name: str) -> bool:
    """Whether ``name`` is a hardware surface format (frames on a device, not in memory)."""
    return name in _HW_PIX_FMTS


def choose_encoder(software: str, width: int, height: int, pix_fmt: str, requested: str = DEFAULT_ENCODER) -> HWChoice:
    """Resolve ``--encoder`` for a ``width`` x ``height`` output whose ``--codec`` is ``software``.

    Raises:
        ConfigError: an unknown value, or an encoder asked for by name that cannot be opened.
    """
    requested = check_encoder(requested)
    if requested == "none":
        return _record(HWChoice("encode", "none", software, False, "--encoder none: --codec"))
    if requested != "auto":
        if not av.codec.Codec(requested, "w").hardware_configs and not _hw_name(requested):
            return _record(HWChoice("encode", requested, requested, False, "software encoder asked for"))
        why = _probe_encoder(requested, width, height, pix_fmt, encoder_opener)
        if why:
            raise ConfigError(f"--encoder {requested}: {why} (use --encoder auto or none)")
        return _record(HWChoice("encode", requested, requested, True, f"{requested} opened"))
    candidates = AUTO_ENCODERS.get(software, ())
    if not candidates:
        return _record(HWChoice("encode", "auto", software, False, f"auto: no hardware encoder tried for {software}"))
    reasons = []
    for name in candidates:
        why = _probe_encoder(name, width, height, pix_fmt, encoder_opener)
        if why is None:
            return _record(HWChoice("encode", "auto", name, True, f"auto: {name} opened"))
        reasons.append(why)
    return _record(HWChoice("encode", "auto", software, False, "auto: " + "; ".join(reasons)))


def _hw_name(name: str) -> bool:
    return any(name.endswith(s) for s in ("_nvenc", "_qsv", "_vaapi", "_amf", "_videotoolbox", "_v4l2m2m", "_mf"))


def encode_accel(name: str) -> Any:
    """The ``HWAccel`` encoder ``name`` needs frames uploaded to (None: it takes system memory)."""
    device = next((d for k, d in _ENCODER_DEVICE.items() if name.endswith("_" + k)), None)
    return av.codec.hwaccel.HWAccel(device) if device else None


def decode_accel(choice: HWChoice) -> Any:
    """The ``HWAccel`` to open an input with for ``choice`` (None: software)."""
    if not choice.hardware:
        return None
    return av.codec.hwaccel.HWAccel(choice.chosen, allow_software_fallback=True)
