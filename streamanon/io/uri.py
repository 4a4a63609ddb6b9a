"""Classify input/output locations and keep credentials out of logs."""

from __future__ import annotations

import re
from pathlib import Path

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .avi .webm .ts .mts .m2ts .mpg .mpeg .flv .wmv .3gp .gif .ogv .mxf".split()
)
IMAGE_EXTENSIONS = frozenset(".jpg .jpeg .png .webp .bmp .tif .tiff".split())


def redact(uri: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x``; anything else unchanged."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", str(uri))


def is_live(uri: str) -> bool:
    """Network URLs, capture devices and stdin are live; files are not."""
    s = str(uri)
    return s == "-" or s.lower().startswith(LIVE_SCHEMES) or s.startswith("/dev/video")


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
