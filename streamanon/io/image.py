"""Still images: read with EXIF orientation applied, write in the same format, atomically.

EXIF (GPS, camera serials, timestamps) is dropped unless ``keep_metadata``; the
orientation is baked into the pixels, so the written image needs no orientation tag.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SinkError, SourceOpenError
from .sink import temp_path_for


@dataclass
class StillImage:
    image: NDArray[np.uint8]  # (H, W, 3) RGB
    format: str  # PIL format name: JPEG, PNG, ...
    exif: bytes | None
    has_alpha: bool
    alpha: NDArray[np.uint8] | None


def read_image(path: str | Path) -> StillImage:
    """Load an image as RGB; raise ``SourceOpenError`` with a one-line reason."""
    try:
        with Image.open(path) as opened:
            fmt = opened.format or "PNG"
            exif = opened.info.get("exif")
            im = ImageOps.exif_transpose(opened)
            alpha = None
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                alpha = np.asarray(rgba)[:, :, 3].copy()
                rgb = np.asarray(rgba.convert("RGB"))
            else:
                rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise SourceOpenError(f"input not found: {path}", source=str(path)) from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SourceOpenError(f"cannot read {path} as an image: {exc}", source=str(path)) from exc
    return StillImage(np.ascontiguousarray(rgb), fmt, exif, alpha is not None, alpha)


def write_image(target: str | Path, still: StillImage, image: NDArray[np.uint8], keep_metadata: bool = False) -> None:
    """Write ``image`` in ``still``'s format to ``target`` via a temp file and rename."""
    target = Path(target)
    tmp = temp_path_for(target)
    out = Image.fromarray(image)
    if still.alpha is not None and still.format in ("PNG", "WEBP", "TIFF"):
        out = out.convert("RGBA")
        out.putalpha(Image.fromarray(still.alpha))
    kwargs: dict[str, object] = {}
    if still.format == "JPEG":
        kwargs["quality"] = 95
    if still.format == "WEBP":
        kwargs["quality"] = 95
    if keep_metadata and still.exif:
        exif = Image.Exif()
        exif.load(still.exif)
        exif[0x0112] = 1  # orientation is already applied to the pixels
        kwargs["exif"] = exif.tobytes()
    fmt = still.format if still.format in Image.SAVE else "PNG"
    try:
        out.save(tmp, format=fmt, **kwargs)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise SinkError(f"cannot write {target}: {exc}") from exc
