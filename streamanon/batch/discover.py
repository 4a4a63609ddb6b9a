"""Find the files of an archive, classify them by content, and map them to safe outputs.

Discovery never trusts names: every candidate is probed with Pillow (stills) and PyAV
(video), so a text file called ``x.mp4`` is not media and a video called ``x.avi`` that
is really MP4 is still processed. What the walk does with the odd entries:

* symlinks are followed only when they point *inside* the archive (files only; symlinked
  directories are never walked, which also rules out loops);
* FIFOs, sockets and devices are skipped (opening a FIFO would block);
* the output folder, when it lies inside the archive, is pruned;
* an output path that would leave the output folder (``..``, absolute names, a symlinked
  folder in the output tree) is refused.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import av.error

from ..errors import SinkError
from ..io.uri import is_image_path, is_video_path

log = logging.getLogger(__name__)

# Files a killed run leaves behind (``streamanon.io.sink.temp_path_for``).
PARTIAL_RE = re.compile(r"^\..+\.streamanon-partial(\.[^./]*)?$")

# Pillow formats accepted as stills (content-sniffed; GIF goes through PyAV as video).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")  # MPO is opened by the JPEG plugin
# FFmpeg "video" that is really text rendered as pictures.
TEXT_FORMATS = frozenset({"tty"})
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

EntryKind = Literal["file", "skipped", "failed"]


@dataclass(frozen=True)
class Entry:
    """One thing found in the archive.

    ``kind`` is ``"file"`` for a regular file (or a link to one inside the archive) that
    still has to be probed, ``"skipped"`` for entries that are not processed by design,
    and ``"failed"`` for entries that should have been processed but cannot be.
    """

    rel: str  # path relative to the archive, '/'-separated (the manifest key)
    path: Path  # absolute path to read
    kind: EntryKind
    reason: str | None = None
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class Probe:
    """What a file's content is: ``kind`` None means it is not usable media."""

    kind: Literal["video", "image"] | None
    reason: str | None = None  # why not media, or why it cannot be processed
    format: str = ""
    frames: int = 0
    duration: float = 0.0
    fail: bool = False  # True: media that should have been processed (a failure, not a skip)


def display_rel(rel: str) -> str:
    """A manifest key for any name: non-UTF-8 bytes are shown as ``\\xNN`` escapes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk(archive: Path, out_dir: Path | None = None) -> Iterator[Entry]:
    """Yield every entry below ``archive`` in sorted order (see the module docstring).

    Args:
        archive: the folder to walk.
        out_dir: the output folder; pruned when it lies inside ``archive``.
    """
    root = os.path.realpath(archive)
    out_real = os.path.realpath(out_dir) if out_dir is not None else None
    yield from _walk_dir(Path(archive), "", root, out_real)


def _walk_dir(folder: Path, prefix: str, root: str, out_real: str | None) -> Iterator[Entry]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        rel = prefix.rstrip("/") or "."
        yield Entry(display_rel(rel) + "/", folder, "failed", f"cannot list folder: {exc.strerror or exc}")
        return
    for de in entries:
        rel = prefix + de.name
        path = Path(de.path)
        try:
            yield from _classify(de, rel, path, root, out_real)
        except OSError as exc:
            yield Entry(display_rel(rel), path, "failed", f"cannot stat: {exc.strerror or exc}")


def _classify(de: os.DirEntry[str], rel: str, path: Path, root: str, out_real: str | None) -> Iterator[Entry]:
    key = display_rel(rel)
    if de.is_symlink():
        target = os.path.realpath(path)
        if not _inside(target, root):
            yield Entry(key, path, "skipped", "symlink points outside the archive (not followed)")
            return
        if not os.path.exists(target):
            yield Entry(key, path, "skipped", "broken symlink")
            return
        if os.path.isdir(target):
            yield Entry(key + "/", path, "skipped", "symlinked folder (not followed; its target is walked if inside)")
            return
    if de.is_dir(follow_symlinks=False):
        real = os.path.realpath(path)
        if out_real is not None and real == out_real:
            return  # the output folder inside the archive
        yield from _walk_dir(path, rel + "/", root, out_real)
        return
    st = path.stat()  # follows a link that was checked to stay inside
    if not stat.S_ISREG(st.st_mode):
        yield Entry(key, path, "skipped", "not a regular file (FIFO, socket or device)")
        return
    if PARTIAL_RE.match(de.name):
        yield Entry(key, path, "skipped", "streamanon temporary file")
        return
    if key != rel:
        yield Entry(key, path, "failed", "file name is not valid UTF-8; rename it", st.st_size, st.st_mtime_ns)
        return
    yield Entry(rel, path, "file", None, st.st_size, st.st_mtime_ns)


def safe_output(out_root: Path, rel: str) -> Path:
    """``out_root / rel``, refusing any name that would land outside ``out_root``.

    Raises:
        SinkError: ``rel`` is absolute, has ``..``/``.`` parts or NUL bytes, the target is
            a symlink, or a folder on the way resolves outside ``out_root``.
    """
    parts = rel.split("/")
    if (
        not rel
        or "\x00" in rel
        or rel.startswith("/")
        or os.path.isabs(rel)
        or any(p in ("..", ".", "") for p in parts)
        or (os.altsep is not None and os.altsep in rel)
    ):
        raise SinkError(f"refusing output name {rel!r}: it would escape {out_root}")
    dst = out_root.joinpath(*parts)
    root_real = os.path.realpath(out_root)
    if not _inside(os.path.realpath(dst.parent), root_real):
        raise SinkError(f"refusing output name {rel!r}: a folder on its way leads outside {out_root}")
    if dst.is_symlink():
        raise SinkError(f"refusing output {dst}: it is a symlink")
    return dst


def probe(path: Path) -> Probe:
    """Classify ``path`` by content, then check that its name lets it be processed."""
    try:
        if path.stat().st_size == 0:
            return _by_name(path, Probe(None, "empty file"))
    except OSError as exc:
        return Probe(None, f"cannot read: {exc.strerror or exc}", fail=True)
    found = _probe_image(path)
    if found is None:
        found = _probe_video(path)
    return _by_name(path, found)


def _by_name(path: Path, found: Probe) -> Probe:
    """Apply the name rules: the writer picks its format from the extension."""
    ext = path.suffix.lower() or "(none)"
    if found.kind is None:
        if is_video_path(path) or is_image_path(path):
            return Probe(None, f"has a media extension but is not readable media: {found.reason}", fail=True)
        return Probe(None, f"not media: {found.reason}")
    if found.kind == "image" and not is_image_path(path):
        return Probe(
            None, f"{found.format} image with extension {ext}; rename it to an image extension", found.format, fail=True
        )
    if found.kind == "video" and not is_video_path(path):
        return Probe(
            None,
            f"video ({found.format}) with extension {ext}; rename it to a video extension",
            found.format,
            fail=True,
        )
    return found


def _probe_image(path: Path) -> Probe | None:
    from PIL import Image, UnidentifiedImageError

    Image.init()  # register every plugin, so that all of IMAGE_FORMATS are known
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            return Probe("image", format=im.format or "", frames=1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    except Image.DecompressionBombError:
        return Probe("image", format="huge", frames=1)  # the reader reports it properly


def _probe_video(path: Path) -> Probe:
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeError, ValueError) as exc:
        return Probe(None, _short(exc))
    try:
        fmt = container.format.name
        if not container.streams.video:
            what = "audio only" if container.streams.audio else "no video stream"
            return Probe(None, f"{what} ({fmt})", fmt)
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if fmt in TEXT_FORMATS or codec in TEXT_CODECS:
            return Probe(None, f"text, not video ({fmt}/{codec})", fmt)
        if not stream.codec_context.width or not stream.codec_context.height:
            return Probe(None, f"video stream without a frame size ({fmt}/{codec})", fmt)
        if not _first_frame(container):
            return Probe(None, f"no frame decodes ({fmt}/{codec})", fmt)
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        frames = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate
        if not frames and duration and rate:
            frames = round(duration * float(rate))
        return Probe("video", format=fmt, frames=frames, duration=duration)
    finally:
        container.close()


def _first_frame(container: object) -> bool:
    try:
        for _ in container.decode(video=0):  # type: ignore[attr-defined]
            return True
    except (av.error.FFmpegError, OSError, ValueError):
        return False
    return False


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def clean_partials(out_dir: Path) -> list[Path]:
    """Delete the temp files (``.NAME.streamanon-partial.EXT``) a killed run left in ``out_dir``."""
    removed: list[Path] = []
    for folder, dirs, files in os.walk(out_dir, followlinks=False):
        dirs.sort()
        for name in files:
            if PARTIAL_RE.match(name):
                p = Path(folder) / name
                try:
                    p.unlink()
                    removed.append(p)
                except FileNotFoundError:
                    pass
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run", len(removed))
    return removed
