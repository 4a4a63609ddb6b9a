"""``streamanon demo``: a first run that needs nothing but the installed package.

Why: the README's first command has to work on a fresh machine, where no data folder
exists and nothing may be downloaded. The clip is assembled here from a photo shipped in
the package (``assets/astronaut.jpg``: NASA's portrait of Eileen Collins, public domain,
the copy scikit-image ships; see ``assets/README.md``) placed beside its mirror image, so
there are two faces, and filmed with a slow pan and zoom (faces move, grow, and one
leaves the frame), then anonymised with the product's defaults. The detector is then run
on the result: the demo says how many faces it still finds there (none, or it fails).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from fractions import Fraction
from importlib import resources
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from .cli import add_pipeline_options, config_from_args
from .cliutil import ArgParser, setup_logging
from .errors import ConfigError, SinkError, SourceOpenError
from .pipeline import Stages
from .runner import process_file, write_report

log = logging.getLogger(__name__)

PHOTO = "astronaut.jpg"
FPS = 25
SIZE = (640, 360)  # output (width, height)
# Camera path over the 1024x512 canvas (photo + mirror): crop width and centre, from a
# wide shot of both faces (~63 px wide) to a close-up of the left one (~126 px).
WIDE = (896.0, 512.0, 260.0)
CLOSE = (448.0, 226.0, 130.0)
# The check after the run counts faces the detector is confident about. The product masks
# down to its (recall-first) threshold, 0.2; a filled face-shaped mask itself scores up to
# ~0.25 there, while the photo's faces score 0.8-0.93 at every size the clip shows.
CHECK_SCORE = 0.5


def load_photo() -> NDArray[np.uint8]:
    """The shipped photo as RGB pixels."""
    data = resources.files("streamanon").joinpath("assets", PHOTO).read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:  # a broken install: the asset is part of the wheel
        raise SourceOpenError(f"the demo photo {PHOTO} in the streamanon package cannot be decoded", source=PHOTO)
    return np.ascontiguousarray(image[:, :, ::-1])


def demo_frames(seconds: float, size: tuple[int, int] = SIZE) -> Iterator[NDArray[np.uint8]]:
    """The clip's frames: a pan and zoom over the photo beside its mirror image."""
    photo = load_photo()
    canvas = np.concatenate([photo, photo[:, ::-1]], axis=1)
    ch_max, cw_max = canvas.shape[:2]
    out_w, out_h = size
    n = max(2, round(seconds * FPS))
    for i in range(n):
        e = 0.5 - 0.5 * math.cos(math.pi * i / (n - 1))  # ease in and out
        cw, cx, cy = (a + (b - a) * e for a, b in zip(WIDE, CLOSE, strict=True))
        cw = min(cw, cw_max, ch_max * out_w / out_h)
        ch = cw * out_h / out_w
        x0 = min(max(cx - cw / 2, 0.0), cw_max - cw)
        y0 = min(max(cy - ch / 2, 0.0), ch_max - ch)
        s = out_w / cw
        warp = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], np.float32)
        image = cv2.warpAffine(canvas, warp, (out_w, out_h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        yield np.asarray(image, np.uint8)


def write_demo_clip(path: Path, seconds: float = 3.2) -> int:
    """Write the demo clip (H.264, 25 fps) to ``path``; returns its frame count."""
    if not 0.5 <= seconds <= 60:
        raise ConfigError(f"invalid demo length {seconds!r} s: expected 0.5 to 60")
    n = 0
    try:
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
            stream.width, stream.height = SIZE
            stream.pix_fmt = "yuv420p"
            stream.time_base = stream.codec_context.time_base = Fraction(1, FPS)
            for image in demo_frames(seconds):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = n
                for packet in stream.encode(frame):
                    out.mux(packet)
                n += 1
            for packet in stream.encode(None):
                out.mux(packet)
    except OSError as exc:
        raise SinkError(f"cannot write the demo clip {path}: {exc.strerror or exc}") from exc
    log.debug("demo clip: %d frames -> %s", n, path)
    return n


def count_faces(path: Path, detector: object, threshold: float) -> tuple[int, int]:
    """(faces, frames with a face) the detector finds in the video ``path`` at ``threshold``."""
    faces = frames = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            dets = detector([frame.to_ndarray(format="rgb24")])[0]  # type: ignore[operator]
            found = int((dets.score >= threshold).sum())
            faces += found
            frames += found > 0
    return faces, frames


def main(argv: list[str]) -> int:
    """Entry point of ``streamanon demo``; returns the exit code."""
    p = ArgParser(
        prog="streamanon demo",
        description="Write a short clip with faces (from a public-domain photo shipped in the package), "
        "anonymise it, and say where both are and how many faces the detector still finds.",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("streamanon-demo"),
        help="folder for the clips (default ./streamanon-demo)",
    )
    p.add_argument("--seconds", type=float, default=3.2, help="length of the demo clip (default 3.2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    add_pipeline_options(p)
    ns = p.parse_args(argv)
    setup_logging(ns.verbose)
    config = config_from_args(ns)
    folder: Path = ns.output
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"cannot create the demo folder {folder}: {exc.strerror or exc}") from exc
    src, dst, report_path = folder / "demo_input.mp4", folder / "demo_anonymized.mp4", folder / "demo_report.json"
    frames = write_demo_clip(src, ns.seconds)
    print(f"input:  {src.resolve()} ({frames} frames, {frames / FPS:.1f} s, two faces, NASA photo, public domain)")
    stages = Stages(config)
    report = process_file(src, dst, config, stages=stages, progress=not ns.quiet)
    write_report(report_path, report, config)
    inference = report.inference
    engine = f"{inference.get('backend', '?')} {inference.get('precision', '')}".strip()
    masked = f"{report.frames} frames, {report.faces} face regions masked, {report.fps:.1f} fps, {engine}"
    print(f"result: {dst.resolve()} ({masked})")
    print(f"report: {report_path.resolve()}")
    before, before_frames = count_faces(src, stages.detector, CHECK_SCORE)
    after, after_frames = count_faces(dst, stages.detector, CHECK_SCORE)
    print(
        f"check:  the detector finds {before} faces (score >= {CHECK_SCORE}) on {before_frames}/{frames} frames "
        f"of the input, {after} on {after_frames}/{report.frames} frames of the result"
    )
    if after:
        print(f"streamanon demo: {after} faces are still detectable in {dst}", file=sys.stderr)
        return 1
    return 0
