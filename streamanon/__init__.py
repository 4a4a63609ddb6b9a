"""streamanon: remove identities from video.

The public API (everything else is internal and may change)::

    from streamanon import PipelineConfig, process_file
    process_file("in.mp4", "out.mp4", PipelineConfig())
"""

from .anonymize import METHODS, BlurAnonymizer, PixelateAnonymizer, SolidAnonymizer, create_anonymizer
from .config import AnonymizeConfig, DetectConfig, IOConfig, PipelineConfig, TrackConfig
from .detect import create_detector
from .errors import (
    ConfigError,
    DecodeError,
    ModelError,
    SinkError,
    SourceError,
    StreamanonError,
)
from .io import VideoSink, VideoSource
from .pipeline import Pipeline, Stages
from .runner import RunReport, process_file
from .types import Detections, Frame

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "AnonymizeConfig",
    "BlurAnonymizer",
    "ConfigError",
    "DecodeError",
    "DetectConfig",
    "Detections",
    "Frame",
    "IOConfig",
    "ModelError",
    "Pipeline",
    "PipelineConfig",
    "PixelateAnonymizer",
    "RunReport",
    "SinkError",
    "SolidAnonymizer",
    "SourceError",
    "Stages",
    "StreamanonError",
    "TrackConfig",
    "VideoSink",
    "VideoSource",
    "__version__",
    "create_anonymizer",
    "create_detector",
    "process_file",
]
