"""The surrogate bank: composite faces of nobody (k-Same-M style), built once, shipped small.

Each composite is the average of ``k`` different persons' faces, every face first warped
onto the bank's common mean shape by piecewise-affine warps over its landmarks (dlib's 68
points plus ``FOREHEAD`` points above the brows), so the average stays sharp instead of a
ghost of misaligned features. A composite is kept only if it is nobody in the bank: its
dlib distance to every photo of every bank person is at least dlib's same-person 0.6, and
its FaceRes distance at least FaceRes's 1%-false-match threshold (``models.faceres.THRESHOLD``).

The file (``.npz``) holds composites only (never a raw face): ``faces`` (N, S, S, 3) uint8,
``shape`` (P, 2) the mean shape in composite pixels, ``triangles`` (T, 3) the Delaunay
triangulation of ``shape``, ``gender`` and ``age_band`` per composite (FaceRes of the
composite) and ``min_dlib`` / ``min_faceres``, the distance to the nearest bank photo.

Build the default bank: ``python -m streamanon.anonymize.surrogate_bank build`` (see
``engines/SURROGATE_BANK_CARD.md``).
"""

from __future__ import annotations

import argparse
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..backends.registry import resolve_model
from ..errors import ConfigError, ModelError
from ..geometry import similarity
from ..models.faceres import THRESHOLD as FACERES_THRESHOLD
from ..models.faceres import FaceResRecogniser
from ..models.landmarks import Landmarker68
from ..models.recognizer import THRESHOLD as DLIB_THRESHOLD
from ..models.recognizer import DlibRecogniser, distance
from ..models.store import shared
from .facebank import FaceBankFolder, face_bank_folder
from .generate import extend_outside

log = logging.getLogger(__name__)

#: Side of a composite (px): sharp enough for portrait-size faces after the warp.
SIZE = 160
#: Persons averaged into one composite (k of k-Same-M).
K = 12
#: Composites in the shipped bank.
COUNT = 32
#: A composite's texture is pushed away from the bank's mean face by this factor
#: (``mean + CONTRAST x (average - mean)``): an average of k faces drifts toward the
#: bland mean face, which both recognisers put near many people; 1.5 keeps it a distinct,
#: plausible face (2.5 showed artefacts), chosen by eye on 8 composites.
CONTRAST = 1.5
#: Age bands (FaceRes age, years) a composite is filed under (``--keep age``).
AGE_BANDS: tuple[tuple[str, float], ...] = (("child", 16.0), ("young", 35.0), ("middle", 55.0), ("older", 200.0))
#: Points added above the brows (the forehead, which dlib's 68 points leave out): each brow
#: point moved up by this share of the brow-to-chin height.
FOREHEAD_LIFT = 0.28
#: Registry name of the shipped bank.
REGISTRY_NAME = "surrogate-bank"
#: The default bank's sources (``identities_extra`` folders; terms in the card).
DEFAULT_SOURCES = (
    "identities_extra/clovaai__stargan-v2",
    "identities_extra/ZPdesu__SEAN",
    "identities_extra/yuval-alaluf__SAM",
)


def age_band(age: float) -> str:
    """The ``AGE_BANDS`` name of an age in years."""
    for name, hi in AGE_BANDS:
        if age < hi:
            return name
    return AGE_BANDS[-1][0]


# -- geometry ---------------------------------------------------------------------------
def with_forehead(points68: NDArray[Any], lift: float = FOREHEAD_LIFT) -> NDArray[np.float32]:
    """``(78, 2)``: the 68 points and 10 forehead points (brows lifted by ``lift`` of the
    brow-to-chin height along the face's up axis)."""
    p = np.asarray(points68, np.float32)
    brows = p[17:27]
    up = brows.mean(0) - p[8]  # chin -> brow centre
    out: NDArray[np.float32] = np.vstack([p, brows + lift * up]).astype(np.float32)
    return out


def triangulate(points: NDArray[Any]) -> NDArray[np.int32]:
    """Delaunay triangles (T, 3) of ``points`` (indices)."""
    from scipy.spatial import Delaunay

    tri: NDArray[np.int32] = np.asarray(Delaunay(np.asarray(points, np.float64)).simplices, np.int32)
    return tri


def piecewise_affine(
    src: NDArray[np.uint8],
    src_pts: NDArray[Any],
    dst_pts: NDArray[Any],
    triangles: NDArray[np.int32],
    out_size: tuple[int, int],
    origin: tuple[float, float] = (0.0, 0.0),
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Warp ``src`` so that ``src_pts`` land on ``dst_pts`` (one affine per triangle).

    The output is ``out_size`` (w, h) with ``origin`` the output's top-left in ``dst_pts``'
    coordinates; returns the image and where a triangle covered it. Each output pixel takes
    its triangle's inverse affine in one ``cv2.remap``.
    """
    w, h = out_size
    d = np.asarray(dst_pts, np.float64) - np.asarray(origin, np.float64)
    s = np.asarray(src_pts, np.float64)
    tri_d, tri_s = d[triangles], s[triangles]  # (T, 3, 2)
    # every triangle's output -> source affine in one batched solve: [x y 1] @ M = source
    dm = np.concatenate([tri_d, np.ones((len(triangles), 3, 1))], axis=2)
    det = np.linalg.det(dm)
    ok = np.abs(det) > 1e-6  # degenerate in the output: covers nothing
    mats = np.zeros((len(triangles) + 1, 2, 3), np.float64)
    mats[1:][ok] = np.linalg.solve(dm[ok], tri_s[ok]).transpose(0, 2, 1)
    ids = np.zeros((h, w), np.int32)
    fixed = np.round(tri_d * 16).astype(np.int32)
    for t in np.flatnonzero(ok):
        cv2.fillConvexPoly(ids, fixed[t], int(t) + 1, lineType=cv2.LINE_8, shift=4)
    covered = ids > 0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    m = mats[ids].astype(np.float32)
    map_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
    map_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
    map_x[~covered] = -1
    map_y[~covered] = -1
    out = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.uint8), covered


# -- the bank ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SurrogateBank:
    """Composites of nobody, their common shape and what FaceRes says they look like."""

    faces: NDArray[np.uint8]
    shape: NDArray[np.float32]
    triangles: NDArray[np.int32]
    gender: NDArray[np.str_]
    age_band: NDArray[np.str_]
    min_dlib: NDArray[np.float32]
    min_faceres: NDArray[np.float32]
    k: int
    source: str = ""

    def __len__(self) -> int:
        return len(self.faces)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            faces=self.faces,
            shape=self.shape,
            triangles=self.triangles,
            gender=self.gender,
            age_band=self.age_band,
            min_dlib=self.min_dlib,
            min_faceres=self.min_faceres,
            k=np.int32(self.k),
        )

    @classmethod
    def load(cls, path: str | Path) -> SurrogateBank:
        """Read a bank file; ModelError if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as z:
                bank = cls(
                    np.asarray(z["faces"], np.uint8),
                    np.asarray(z["shape"], np.float32),
                    np.asarray(z["triangles"], np.int32),
                    np.asarray(z["gender"]),
                    np.asarray(z["age_band"]),
                    np.asarray(z["min_dlib"], np.float32),
                    np.asarray(z["min_faceres"], np.float32),
                    int(z["k"]),
                    str(path),
                )
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:  # TypeError: a bare .npy
            raise ModelError(f"not a surrogate bank: {path}: {exc}") from exc
        if bank.faces.ndim != 4 or not len(bank.faces) or bank.shape.shape != (78, 2):
            raise ModelError(f"not a surrogate bank: {path}: unexpected array shapes")
        return bank


def default_bank() -> SurrogateBank:
    """The shipped bank (``engines/surrogate-bank.npz``, checksum from the registry)."""
    return SurrogateBank.load(resolve_model(REGISTRY_NAME))


def surrogate_bank(face_bank: str | None, k: int = K) -> SurrogateBank:
    """The bank of a run: the shipped one, a bank file (``.npz``), or composites of ``k``
    persons each built from a ``--face-bank`` folder of consenting people
    (``facebank.face_bank_folder``: ``<person>/<photo>``).

    Loaded (or built) once per process and shared read-only, like the other models: streams
    makes one factory per feed, eval one per method.

    Raises:
        ConfigError: the path is neither a file nor a folder, the folder holds no face, or
            fewer than ``k`` persons with a face (``k`` is never lowered to fit the folder).
        ModelError: the file is not a bank.
    """
    return shared(REGISTRY_NAME, (face_bank, k), lambda: _load_bank(face_bank, k))


def _load_bank(face_bank: str | None, k: int) -> SurrogateBank:
    if face_bank is None:
        return default_bank()
    path = Path(face_bank)
    if path.is_file():
        return SurrogateBank.load(path)
    if not path.is_dir():
        raise ConfigError(f"--face-bank {path}: neither a bank file nor a folder")
    log.info("surrogate: building composites of k=%d persons from %s", k, path)
    return build_bank([path], count=COUNT, k=k)


@dataclass
class _Photo:
    person: str
    aligned: NDArray[np.uint8]  # warped onto the mean shape
    dlib: NDArray[np.float32]
    faceres: NDArray[np.float32]
    male: float
    age: float


def _read_faces(folders: Sequence[FaceBankFolder], size: int) -> tuple[list[tuple[str, Any, Any, Any]], Any, Any]:
    """(person, image, face, 68 points) of one photo per person: the first of the person's
    photos where dlib finds a face and fits its 68 points (its largest face)."""
    rec = DlibRecogniser("hog", 1, max_side=600)
    lm = Landmarker68()
    out: list[tuple[str, Any, Any, Any]] = []
    for bank in folders:
        for person, paths in bank.persons.items():
            for path in paths:
                img = bank.read(path)
                got = None if img is None else _one_face(rec, lm, img, size)
                if got is not None:
                    out.append((f"{bank.root.name}/{person}", *got))
                    break
    return out, rec, FaceResRecogniser(locator=rec)


def _one_face(rec: Any, lm: Any, img: NDArray[np.uint8], size: int) -> tuple[Any, Any, Any] | None:
    """(image scaled for the warp, its largest dlib face, 68 points) or None."""
    faces = rec.detect(img)
    if not faces:
        return None
    scale = min(1.0, 1.2 * size / max(faces[0].size, 1.0))  # no aliasing in the warp down
    if scale < 1.0:
        img = np.ascontiguousarray(
            cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        )
    f = rec.locate(img, faces[0].box * scale)
    p68 = lm(img, f.box[None])[0]
    if not np.isfinite(p68).all():
        return None
    return img, f, p68


def mean_shape(shapes: Sequence[NDArray[np.float32]], size: int) -> NDArray[np.float32]:
    """The mean of ``shapes`` (78 points each) after a similarity onto a fitted template,
    placed in a ``size`` square with margins."""
    ref = shapes[0]
    for _ in range(3):  # generalised Procrustes: align to the running mean
        aligned = [_apply(similarity(s, ref), s) for s in shapes]
        ref = np.mean(aligned, axis=0).astype(np.float32)
    lo, hi = ref.min(0), ref.max(0)
    scale = 0.84 * size / float((hi - lo).max())
    centred: NDArray[np.float32] = ((ref - (lo + hi) / 2) * scale + size / 2).astype(np.float32)
    return centred


def _apply(m: NDArray[np.float64], p: NDArray[Any]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (np.asarray(p, np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return out


def composite_face(dlib_rec: Any, image: NDArray[np.uint8], shape: NDArray[np.float32]) -> Any:
    """A dlib ``Face`` of a composite (box from its known shape, 5 points fitted in it)."""
    lo, hi = shape[:68].min(0), shape[:68].max(0)
    return dlib_rec.locate(image, np.array([lo[0], lo[1], hi[0], hi[1]], np.float32))


@dataclass
class BankPhotos:
    """The bank persons' faces on the common shape, with their recogniser vectors."""

    photos: list[_Photo]
    shape: NDArray[np.float32]
    triangles: NDArray[np.int32]
    dlib_rec: Any
    faceres: Any


def load_photos(folders: Sequence[str | Path], size: int = SIZE) -> BankPhotos:
    """One photo of every person of the folders (``facebank.face_bank_folder``; the first
    photo with a dlib face, its largest), warped onto the mean shape.

    Raises:
        ConfigError: a folder does not exist or holds no image, or no face is found.
    """
    banks = [face_bank_folder(folder) for folder in folders]
    found, dlib_rec, faceres = _read_faces(banks, size)
    log.info("bank: faces of %d persons of %d", len(found), sum(len(b.persons) for b in banks))
    if not found:
        raise banks[0].no_face_error()
    shapes = [with_forehead(p68) for _, _, _, p68 in found]
    mshape = mean_shape(shapes, size)
    tri = triangulate(mshape)
    photos: list[_Photo] = []
    for (name, img, face, _), pts in zip(found, shapes, strict=True):
        aligned, _ = piecewise_affine(img, pts, mshape, tri, (size, size))
        attrs = faceres.analyse(img, [face])[0]
        photos.append(_Photo(name, aligned, dlib_rec.embed(img, [face])[0], attrs.embedding, attrs.male, attrs.age))
    return BankPhotos(photos, mshape, tri, dlib_rec, faceres)


def build_bank(
    folders: Sequence[str | Path] | BankPhotos,
    count: int = COUNT,
    k: int = K,
    size: int = SIZE,
    seed: int = 0,
    tries: int = 60,
) -> SurrogateBank:
    """Composites of ``k`` persons each from ``DIR/<person>/<photo>`` folders (see module doc).

    Each composite draws ``k`` persons (one photo each) from the whole bank; its gender and
    age band are what FaceRes says of the composite. A composite within dlib's 0.6 or FaceRes's
    threshold of any bank photo is refused and redrawn (at most ``tries`` x ``count`` draws).

    Raises:
        ConfigError: fewer than ``k`` persons, or no composite passes the check.
    """
    bp = folders if isinstance(folders, BankPhotos) else load_photos(folders, size)
    photos = bp.photos
    size = photos[0].aligned.shape[0]
    if len({p.person for p in photos}) < k:
        raise ConfigError(f"face bank: {len({p.person for p in photos})} persons with a face, fewer than k={k}")
    vet = _Vetting(bp)
    # Members are drawn from the whole bank, not from one gender/age group: composites of
    # similar persons stay near each of them (0 of 200 draws within FaceRes gender and age
    # band passed the check on the default sources; ~1 in 8 across the bank).
    mean_face = np.mean([p.aligned.astype(np.float32) for p in photos], axis=0)
    rng = np.random.default_rng(seed)
    _, cover = piecewise_affine(np.zeros((size, size, 3), np.uint8), bp.shape, bp.shape, bp.triangles, (size, size))
    kept: list[_Composite] = []
    for attempt in range(tries * count):
        if len(kept) >= count:
            break
        if attempt and attempt % 100 == 0:
            log.info("bank: %d composites after %d draws", len(kept), attempt)
        members = rng.choice(len(photos), size=k, replace=False)
        comp = np.mean([photos[m].aligned.astype(np.float32) for m in members], axis=0)
        comp = mean_face + CONTRAST * (comp - mean_face)
        comp_u8 = np.clip(comp + 0.5, 0, 255).astype(np.uint8)
        got = vet(np.where(cover[..., None], comp_u8, _edge_fill(comp_u8, cover)))
        if got is not None:
            kept.append(got)
    if not kept:
        raise ConfigError(f"face bank: every composite was within a threshold of a bank person ({vet.refused} refused)")
    log.info("bank: %d composites kept, %d refused", len(kept), vet.refused)
    return SurrogateBank(
        np.stack([c.face for c in kept]),
        bp.shape,
        bp.triangles,
        np.array([c.gender for c in kept]),
        np.array([c.band for c in kept]),
        np.array([c.min_dlib for c in kept], np.float32),
        np.array([c.min_faceres for c in kept], np.float32),
        k,
    )


@dataclass
class _Composite:
    """A composite that passed the check: what FaceRes says of it, and its distances to the
    nearest bank photo."""

    face: NDArray[np.uint8]
    gender: str
    band: str
    min_dlib: float
    min_faceres: float


class _Vetting:
    """The privacy check of a composite: refused (None) within dlib's or FaceRes's threshold
    of any bank photo; counts the refusals."""

    def __init__(self, bp: BankPhotos) -> None:
        self.bp = bp
        self.all_dlib = np.stack([p.dlib for p in bp.photos])
        self.all_fr = np.stack([p.faceres for p in bp.photos])
        self.refused = 0

    def __call__(self, comp: NDArray[np.uint8]) -> _Composite | None:
        face = composite_face(self.bp.dlib_rec, comp, self.bp.shape)
        d = float(distance(self.bp.dlib_rec.embed(comp, [face]), self.all_dlib).min())
        if d < DLIB_THRESHOLD:  # dlib first: cheaper than FaceRes
            self.refused += 1
            log.debug("composite refused: dlib %.3f to the nearest bank photo", d)
            return None
        attrs = self.bp.faceres.analyse(comp, [face])[0]
        f = float(distance(attrs.embedding[None], self.all_fr).min())
        if f < FACERES_THRESHOLD:
            self.refused += 1
            log.debug("composite refused: FaceRes %.3f to the nearest bank photo", f)
            return None
        return _Composite(comp, attrs.gender, age_band(attrs.age), d, f)


def _edge_fill(image: NDArray[np.uint8], covered: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Pixels outside the triangulated face take the nearest covered pixel (no black corners)."""
    return extend_outside(image, covered.astype(np.uint8))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamanon.anonymize.surrogate_bank build [--data DIR] [-o FILE]``."""
    p = argparse.ArgumentParser(prog="python -m streamanon.anonymize.surrogate_bank")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a surrogate bank from person folders")
    b.add_argument("folders", nargs="*", type=Path, help="DIR/<person>/<photo> folders (default: the shared sources)")
    b.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="shared data root (default ../shared/data)"
    )
    b.add_argument("-o", "--output", type=Path, default=Path("engines/surrogate-bank.npz"))
    b.add_argument("--count", type=int, default=COUNT)
    b.add_argument("-k", type=int, default=K)
    b.add_argument("--size", type=int, default=SIZE)
    b.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folders = ns.folders or [ns.data / s for s in DEFAULT_SOURCES]
    bank = build_bank(folders, ns.count, ns.k, ns.size, ns.seed)
    bank.save(ns.output)
    log.info(
        "wrote %s: %d composites of k=%d; nearest bank photo: dlib >= %.3f, FaceRes >= %.3f",
        ns.output,
        len(bank),
        bank.k,
        float(bank.min_dlib.min()),
        float(bank.min_faceres.min()),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
