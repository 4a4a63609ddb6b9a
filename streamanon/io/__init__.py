"""Media input and output through PyAV (video) and Pillow (stills)."""

from .image import StillImage, read_image, write_image
from .sink import VideoSink, temp_path_for
from .source import SourceInfo, VideoSource
from .uri import is_image_path, is_live, is_video_path, redact

__all__ = [
    "SourceInfo",
    "StillImage",
    "VideoSink",
    "VideoSource",
    "is_image_path",
    "is_live",
    "is_video_path",
    "read_image",
    "redact",
    "temp_path_for",
    "write_image",
]
