"""Reading a user's ``--face-bank`` folder: one loader, one error behaviour for every method.

Layout: ``DIR/<person>/<photo>`` (a sub-folder per person, searched recursively), and
images directly in ``DIR`` are each a person of their own. Image files are those
``io.is_image_path`` names, hidden files skipped. A file that cannot be read is skipped
with a warning and counted (``FaceBankFolder.unreadable``); a folder that does not exist,
or holds no image, is a ``ConfigError``, and so is a bank where no face is found
(``no_face_error``), whichever method reads it (``k-same``, ``surrogate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..io import is_image_path, read_image
from ..types import Detections

log = logging.getLogger(__name__)

#: Tight face crops are padded (by this share of their side, 256 px at most) before the
#: product's detector looks at them (as ``streamanon eval`` does).
BANK_PAD = 0.5


@dataclass
class FaceBankFolder:
    """The image files of a ``--face-bank`` folder, by person."""

    root: Path
    persons: dict[str, list[Path]]
    unreadable: list[Path] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(len(v) for v in self.persons.values())

    def images(self) -> Iterator[tuple[str, Path, NDArray[np.uint8]]]:
        """``(person, path, RGB image)`` of every readable file, person by person."""
        for person, paths in self.persons.items():
            for path in paths:
                image = self.read(path)
                if image is not None:
                    yield person, path, image

    def read(self, path: Path) -> NDArray[np.uint8] | None:
        """One image, or None (logged, counted in ``unreadable``) when it cannot be read."""
        try:
            return read_image(path).image
        except Exception as exc:  # one bad file does not stop the bank
            log.warning("--face-bank: skipping %s: %s", path, exc)
            self.unreadable.append(path)
            return None

    def largest_faces(
        self, detect: Callable[[NDArray[np.uint8]], Detections]
    ) -> Iterator[tuple[str, Path, NDArray[np.uint8], Detections]]:
        """``(person, path, padded image, its largest face)`` of every readable image where
        ``detect`` (the product's detector on one RGB image) finds a face; the others are
        skipped (logged)."""
        for person, path, img in self.images():
            h, w = img.shape[:2]
            p = min(256, round(BANK_PAD * max(h, w)))
            padded: NDArray[np.uint8] = np.ascontiguousarray(
                cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE), np.uint8
            )
            dets = detect(padded)
            if not len(dets):
                log.info("face bank: no face in %s", path)
                continue
            yield person, path, padded, dets[int(np.argmax(dets.area))]

    def no_face_error(self) -> ConfigError:
        """The error of a bank where no face (or too few persons) was found."""
        bad = f", {len(self.unreadable)} unreadable" if self.unreadable else ""
        return ConfigError(f"--face-bank {self.root}: no face found in {self.files} images{bad}")


def face_bank_folder(folder: str | Path) -> FaceBankFolder:
    """The ``FaceBankFolder`` of ``folder``.

    Raises:
        ConfigError: ``folder`` is not a folder, or holds no image file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--face-bank {root}: not a folder")
    persons: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.is_file() and is_image_path(p) and not _hidden(p, root))
            if files:
                persons.setdefault(entry.name, []).extend(files)
        elif entry.is_file() and is_image_path(entry):
            persons.setdefault(entry.stem, []).append(entry)
    if not persons:
        raise ConfigError(f"--face-bank {root}: no image files (expected {root}/<person>/<photo>)")
    return FaceBankFolder(root, persons)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
