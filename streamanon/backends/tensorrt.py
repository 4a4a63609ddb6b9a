"""TensorRT engines (GPU only, extra ``[tensorrt]``). Placeholder until filled in below."""
from __future__ import annotations


def tensorrt_status() -> str:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "not installed (pip install 'streamanon[tensorrt]'; needs an NVIDIA GPU)"
    return "installed"
