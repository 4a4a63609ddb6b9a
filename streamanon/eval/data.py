"""Evaluation inputs: identity folders and face-box annotations (WIDER FACE txt, dlib
imglab XML, YouTube Faces ``labeled_faces.txt``).

Every problem with an input names the file (and line) and raises ``SourceOpenError``
(missing, unreadable or malformed data) or ``ConfigError`` (a bad option).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, SourceOpenError
from ..io import VideoSource, is_image_path, read_image

log = logging.getLogger(__name__)

FORMATS = ("auto", "wider", "dlib-xml", "youtube-faces")


# -- identities -----------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityImage:
    """One photo of one person: ``identity`` is the sub-folder name."""

    identity: str
    path: Path


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p))


def load_identities(dirs: Sequence[str | Path]) -> list[IdentityImage]:
    """Images of every ``DIR/<identity>/<image>`` of each folder, sorted.

    With several folders, identities are named ``<folder>/<identity>`` so that equal
    sub-folder names in different folders stay different people. Images directly in a
    folder (group shots) are not identity photos and are skipped.

    Raises:
        SourceOpenError: a folder is missing, is a file, or holds no identity sub-folder
            with images.
    """
    if not dirs:
        raise ConfigError("no --faces folder given")
    out: list[IdentityImage] = []
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise SourceOpenError(f"faces folder not found: {root}", source=str(root))
        if not root.is_dir():
            raise SourceOpenError(
                f"--faces expects a folder of per-identity sub-folders, got a file: {root}", source=str(root)
            )
        found = 0
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            imgs = _images_in(sub)
            name = f"{root.name}/{sub.name}" if len(dirs) > 1 else sub.name
            out.extend(IdentityImage(name, p) for p in imgs)
            found += bool(imgs)
        loose = _images_in(root)
        if loose:
            log.info("%s: skipping %d images outside identity sub-folders", root, len(loose))
        if not found:
            raise SourceOpenError(
                f"no identity sub-folders with images in {root} (expected {root}/<person>/<image>.jpg)",
                source=str(root),
            )
    return out


# -- face boxes -----------------------------------------------------------------------
@dataclass
class GroundTruth:
    """Annotated faces of one image (or one frame of a video).

    Attributes:
        name: the image's name in the annotation file.
        path: image file, or the video file when ``frame`` is set.
        boxes: ``(N, 4)`` float32 xyxy face boxes.
        ignore: ``(N,)`` faces that count neither as found nor as missed (WIDER
            ``invalid``, imglab ``ignore``).
        frame: 0-based frame index in the video ``path`` (``None`` for stills).
    """

    name: str
    path: Path
    boxes: NDArray[np.float32]
    ignore: NDArray[np.bool_]
    frame: int | None = None


def _boxes(rows: list[list[float]]) -> NDArray[np.float32]:
    return np.asarray(rows, np.float32).reshape(-1, 4)


def detect_format(annotations: Path) -> str:
    """Guess the annotation format from the file name and its first lines."""
    if annotations.suffix.lower() == ".xml":
        return "dlib-xml"
    lines = [ln.strip() for ln in _read_lines(annotations)[:3] if ln.strip()]
    if lines and lines[0].count(",") >= 7:
        return "youtube-faces"
    if len(lines) >= 2 and is_image_path(lines[0]) and lines[1].isdigit():
        return "wider"
    raise SourceOpenError(
        f"cannot tell the format of {annotations}; pass --format wider, dlib-xml or youtube-faces",
        source=str(annotations),
    )


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise SourceOpenError(f"annotations not found: {path}", source=str(path))
    if not path.is_file():
        raise SourceOpenError(f"annotations must be a file: {path}", source=str(path))
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise SourceOpenError(f"cannot read {path}: {exc.strerror}", source=str(path)) from exc


def _resolve(images: Path, name: str, also: Path | None = None) -> Path | None:
    parts = [p for p in re.split(r"[\\/]+", name) if p]
    for base in (images, images / "images", *([also] if also else [])):
        for k in range(len(parts)):
            cand = base.joinpath(*parts[k:])
            if cand.is_file():
                return cand
    return None


def parse_wider(annotations: Path, images: Path) -> list[GroundTruth]:
    """WIDER FACE ``name / count / x y w h blur expr illum invalid occl pose`` lines.

    ``invalid`` faces (and boxes without area) are ignored, as in the official tool.
    """
    lines = [ln.strip() for ln in _read_lines(annotations)]
    out: list[GroundTruth] = []
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name, where = lines[i], f"{annotations}:{i + 1}"
        if not is_image_path(name):
            raise SourceOpenError(f"{where}: malformed WIDER annotation: expected an image name, got {name[:60]!r}")
        try:
            n = int(lines[i + 1])
        except (IndexError, ValueError):
            raise SourceOpenError(f"{annotations}:{i + 2}: malformed WIDER annotation: expected a face count") from None
        rows, ign = [], []
        body = lines[i + 2 : i + 2 + max(n, 1)]
        if n == 0 and body and body[0].replace("0", "").strip():
            body = []  # some files omit the all-zero row of empty images
        for k, row in enumerate(body[:n]):
            vals = row.split()
            if len(vals) < 4:
                raise SourceOpenError(f"{annotations}:{i + 3 + k}: malformed WIDER box: {row[:60]!r}")
            try:
                x, y, w, h = (float(v) for v in vals[:4])
                invalid = len(vals) >= 8 and int(vals[7]) == 1
            except ValueError:
                raise SourceOpenError(f"{annotations}:{i + 3 + k}: malformed WIDER box: {row[:60]!r}") from None
            rows.append([x, y, x + w, y + h])
            ign.append(invalid or w <= 0 or h <= 0)
        if len(body) < max(n, 0):
            raise SourceOpenError(f"{where}: WIDER annotation says {n} faces but the file ends")
        i += 2 + (len(body) if n == 0 else n)
        path = _resolve(images, name)
        if path is None:
            raise SourceOpenError(f"image of {where} not found under {images}: {name}", source=str(images))
        out.append(GroundTruth(name, path, _boxes(rows), np.asarray(ign, np.bool_)))
    return out


def parse_dlib_xml(annotations: Path, images: Path | None) -> list[GroundTruth]:
    """dlib imglab XML: ``<image file=..><box top left width height [ignore='1']/>``."""
    if not annotations.is_file():
        raise SourceOpenError(f"annotations not found: {annotations}", source=str(annotations))
    try:
        root = ET.parse(annotations).getroot()
    except ET.ParseError as exc:
        raise SourceOpenError(f"malformed XML in {annotations}: {exc}", source=str(annotations)) from exc
    nodes = root.findall("./images/image")
    if not nodes:
        raise SourceOpenError(f"{annotations}: no <images><image> entries (not a dlib imglab file?)")
    out: list[GroundTruth] = []
    for node in nodes:
        name = node.get("file")
        if not name:
            raise SourceOpenError(f"{annotations}: an <image> has no file attribute")
        path = _resolve(images or annotations.parent, name, also=annotations.parent)
        if path is None:
            raise SourceOpenError(f"image {name} of {annotations} not found under {images or annotations.parent}")
        rows, ign = [], []
        for box in node.findall("box"):
            try:
                top, left, w, h = (float(box.get(k, "")) for k in ("top", "left", "width", "height"))
            except ValueError:
                raise SourceOpenError(f"{annotations}: malformed <box> in {name}: {box.attrib}") from None
            rows.append([left, top, left + w, top + h])
            ign.append(box.get("ignore", "0") not in ("0", "false", ""))
        out.append(GroundTruth(name, path, _boxes(rows), np.asarray(ign, np.bool_)))
    return out


def _youtube_video(annotations: Path, images: Path) -> Path | None:
    stem = annotations.name.split(".labeled_faces")[0]
    for base in (annotations.parent, images):
        for ext in (".avi", ".mp4", ".mkv"):
            cand = base / f"{stem}{ext}"
            if cand.is_file():
                return cand
    return None


def parse_youtube_faces(annotations: Path, images: Path) -> list[GroundTruth]:
    """YouTube Faces ``Subject\\seq\\seq.frame.jpg,0,cx,cy,w,h,0.0,1``: (cx, cy) is the
    CENTRE of the box. Frames are the JPEGs named in the file or, when those are absent,
    the i-th decoded frame of ``<sequence>.avi`` beside the annotations for line i."""
    lines = [ln.strip() for ln in _read_lines(annotations) if ln.strip()]
    if not lines:
        raise SourceOpenError(f"{annotations}: no annotations")
    video: Path | None = None
    out: list[GroundTruth] = []
    for i, line in enumerate(lines):
        vals = line.split(",")
        if len(vals) < 6:
            raise SourceOpenError(f"{annotations}:{i + 1}: malformed YouTube Faces line: {line[:60]!r}")
        try:
            cx, cy, w, h = (float(v) for v in vals[2:6])
        except ValueError:
            raise SourceOpenError(f"{annotations}:{i + 1}: malformed YouTube Faces box: {line[:60]!r}") from None
        box = _boxes([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
        path = None if video else _resolve(images, vals[0], also=annotations.parent)
        if path is None:
            video = video or _youtube_video(annotations, images)
            if video is None:
                raise SourceOpenError(
                    f"{annotations}:{i + 1}: frame {vals[0]} not found under {images} and no video beside it"
                )
            out.append(GroundTruth(vals[0], video, box, np.zeros(1, np.bool_), frame=i))
        else:
            out.append(GroundTruth(vals[0], path, box, np.zeros(1, np.bool_)))
    return out


def load_annotations(annotations: str | Path, images: str | Path | None, fmt: str = "auto") -> list[GroundTruth]:
    """Ground truth of an annotation file in ``fmt`` (see ``FORMATS``).

    Raises:
        ConfigError: unknown format.
        SourceOpenError: missing/malformed file, or an image it names is missing.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown annotation format {fmt!r}; choose from: {', '.join(FORMATS)}")
    ann = Path(annotations)
    img_dir = Path(images) if images is not None else ann.parent
    if not img_dir.is_dir():
        raise SourceOpenError(f"images folder not found: {img_dir}", source=str(img_dir))
    kind = detect_format(ann) if fmt == "auto" else fmt
    if kind == "wider":
        gts = parse_wider(ann, img_dir)
    elif kind == "dlib-xml":
        gts = parse_dlib_xml(ann, img_dir)
    else:
        gts = parse_youtube_faces(ann, img_dir)
    if not gts:
        raise SourceOpenError(f"{ann}: no annotated images", source=str(ann))
    return gts


def iter_images(gts: Sequence[GroundTruth], every: int = 1) -> Iterator[tuple[GroundTruth, NDArray[np.uint8]]]:
    """Each ground truth with its RGB pixels; videos are decoded once, in order."""
    for k, gt in enumerate(gts):
        if k % every:
            continue
        if gt.frame is None:
            yield gt, read_image(gt.path).image
    wanted: dict[Path, dict[int, GroundTruth]] = {}
    for k, gt in enumerate(gts):
        if gt.frame is not None and k % every == 0:
            wanted.setdefault(gt.path, {})[gt.frame] = gt
    for path, frames in wanted.items():
        last = max(frames)
        with VideoSource(path, audio=False) as src:
            for frame in src:
                if frame.index in frames:
                    yield frames[frame.index], frame.image
                if frame.index >= last:
                    break
