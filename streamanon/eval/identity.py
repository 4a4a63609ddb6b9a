"""``eval identity``: is a person still recognisable after the product anonymised them?

For every identity photo, dlib finds the face in the ORIGINAL (box + 5 landmarks) and
embeds it. The product anonymises the photo; the anonymised face is then embedded at
the ORIGINAL's box and landmarks. Re-detecting in the anonymised image would let a
method "win" by merely breaking dlib's detector (a solid mask would never be embedded
at all); embedding the same aligned region measures what is left of the identity.

Per method:

* ``verification_leakage``: share of faces whose anonymised embedding lies within the
  recogniser's threshold (0.6) of the same photo's original embedding, or that the
  product did not mask at all (``missed``: less than half of dlib's box covered by the
  product's faces);
* ``rank1``: anonymised probes matched against the OTHER originals (leave-one-out), over
  every identity with at least two photos; ``chance`` is the rate of a random guess;
* ``detection_survival``: share of anonymised faces dlib's detector still finds (IoU >= 0.5);
* quality: PSNR/SSIM/MS-SSIM of the whole image and outside the product's masks, and
  PSNR/SSIM inside them (``psnr_face``/``ssim_face``: what a method that keeps the face,
  ``adversarial``, changes of it).

Extra views (``View``) score the same anonymised outputs again: with another recogniser
(FaceRes: a transfer number for a perturbation computed against dlib) and/or after the
image went through H.264 at a CRF (``encode_h264``), so a method is not credited for what
the encoder of its own output file would undo.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from ..io import read_image
from ..models.recognizer import Face, Recogniser, distance
from ..track.association import box_iou
from ..track.coverage import box_inside_fraction
from .data import IdentityImage
from .metrics import mean_of, psnr, quality, ssim
from .product import MethodSpec, ProductRunner

log = logging.getLogger(__name__)

#: A face is "missed" by the product when less than this share of dlib's box is inside
#: the product's face boxes.
MISSED_BELOW = 0.5
#: dlib must find the anonymised face at this IoU with the original box to "survive".
SURVIVAL_IOU = 0.5
#: ``none`` must leak at least this much or the harness itself is broken.
CONTROL_MIN_LEAKAGE = 0.9
#: Side of the face crops kept for reports.
EXAMPLE_SIZE = 128


@dataclass
class Reference:
    """An identity photo with its original face (largest dlib face) and embedding."""

    identity: str
    path: str
    image: NDArray[np.uint8]
    face: Face
    embedding: NDArray[np.float32]


@dataclass
class FaceResult:
    """One reference face after one method."""

    distance: float
    missed: bool
    survived: bool
    quality: dict[str, float | None]
    embedding: NDArray[np.float32]
    crop: NDArray[np.uint8] | None = None  # anonymised face crop, kept only for reports


@dataclass
class MethodResult:
    """Every face of one method, in reference order (``views``: the extra views' results)."""

    key: str
    faces: list[FaceResult] = field(default_factory=list)
    views: dict[str, MethodResult] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """An extra way to score the anonymised outputs: ``recogniser`` (with ``embeddings``,
    its ``(N, D)`` vectors of the reference faces) on the image as it is, or after H.264
    at ``crf``."""

    recogniser: Recogniser
    embeddings: NDArray[np.float32]
    crf: int | None = None
    preset: str = "veryfast"

    def key(self, method: str) -> str:
        """``method`` tagged with the view: ``adversarial @faceres crf28``."""
        tags = [] if self.recogniser.name == "dlib" else [self.recogniser.name]
        tags += [] if self.crf is None else [f"crf{self.crf}"]
        return f"{method} @{' '.join(tags)}" if tags else method


def encode_h264(image: NDArray[np.uint8], crf: int, preset: str = "veryfast") -> NDArray[np.uint8]:
    """``image`` after one H.264 intra frame (PyAV libx264, yuv420p, ``crf``, ``preset``) and back.

    Odd sides are edge-padded to even for 4:2:0 and cropped back. One intra frame is
    what a still output or a video's key frame gets; inter frames of a video are coded
    from references and can lose more detail at the same CRF.
    """
    h, w = image.shape[:2]
    img = image
    if h % 2 or w % 2:
        img = np.asarray(cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE), np.uint8)
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = img.shape[1], img.shape[0]
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"crf": str(crf), "preset": preset}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    dec = av.CodecContext.create("h264", "r")
    frames = [f for pkt in packets for f in dec.decode(pkt)] + list(dec.decode(None))
    if len(frames) != 1:
        raise ValueError(f"H.264 round trip returned {len(frames)} frames, expected 1")
    out: NDArray[np.uint8] = np.ascontiguousarray(frames[0].to_ndarray(format="rgb24")[:h, :w], np.uint8)
    return out


def _face_quality(
    original: NDArray[np.uint8], other: NDArray[np.uint8], mask: NDArray[np.bool_]
) -> dict[str, float | None]:
    """PSNR and SSIM inside the product's masks (``None`` where nothing was masked)."""
    return {"psnr_face": psnr(original, other, mask), "ssim_face": ssim(original, other, mask)}


def build_references(images: Sequence[IdentityImage], rec: Recogniser) -> tuple[list[Reference], list[str]]:
    """Load each photo, keep its largest dlib face; photos without a face are listed.

    Raises:
        SourceOpenError: an image cannot be read.
    """
    refs: list[Reference] = []
    skipped: list[str] = []
    for item in images:
        img = read_image(item.path).image
        faces = rec.detect(img)
        if not faces:
            skipped.append(str(item.path))
            log.info("no dlib face in %s; skipped", item.path)
            continue
        face = faces[0]
        refs.append(Reference(item.identity, str(item.path), img, face, rec.embed(img, [face])[0]))
    return refs, skipped


def crop_box(box: NDArray[np.float32], width: int, height: int, context: float = 1.5) -> tuple[int, int, int, int]:
    """Square crop around a face box (``context`` x its larger side), clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = context * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a, b = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    c, d = min(width, round(cx + side / 2)), min(height, round(cy + side / 2))
    return a, b, max(c, a + 1), max(d, b + 1)


def face_crop(image: NDArray[np.uint8], box: NDArray[np.float32], size: int) -> NDArray[np.uint8]:
    """The face of ``box`` with context, resized to ``size`` x ``size`` (reports, attack)."""
    a, b, c, d = crop_box(box, image.shape[1], image.shape[0])
    out = np.asarray(cv2.resize(image[b:d, a:c], (size, size), interpolation=cv2.INTER_AREA), np.uint8)
    return out


def anonymise_faces(
    refs: Sequence[Reference],
    product: ProductRunner,
    rec: Recogniser,
    spec: MethodSpec,
    keep_rows: Collection[int] = (),
    views: Sequence[View] = (),
) -> MethodResult:
    """Run the product with one method on every reference photo and score each face.

    Args:
        keep_rows: reference rows whose anonymised face crop is kept (for reports).
        views: extra scorings of the same outputs (``result.views``, keyed ``View.key``).
    """
    result = MethodResult(spec.key)
    for v in views:
        result.views[v.key(spec.key)] = MethodResult(v.key(spec.key))
    product.prepare([r.image for r in refs], spec)
    for i, ref in enumerate(refs):
        out = product.run(ref.image, spec, photo=i)
        covered = float(box_inside_fraction(ref.face.box, out.dets.xyxy)[0]) if len(out.dets) else 0.0
        missed = covered < MISSED_BELOW
        emb = rec.embed(out.image, [ref.face])[0]
        dist = float(distance(emb, ref.embedding)[0, 0])
        found = rec.detect(out.image)
        survived = bool(found) and bool((box_iou([ref.face.box], [f.box for f in found]) >= SURVIVAL_IOU).any())
        crop = face_crop(out.image, ref.face.box, EXAMPLE_SIZE) if i in keep_rows else None
        q = quality(ref.image, out.image, out.mask) | _face_quality(ref.image, out.image, out.mask)
        result.faces.append(FaceResult(dist, missed, survived, q, emb, crop))
        encoded: dict[int, tuple[NDArray[np.uint8], bool, dict[str, float | None]]] = {}
        for v in views:
            if v.crf is None:
                img, surv, vq = out.image, survived, q
            else:
                if v.crf not in encoded:
                    e = encode_h264(out.image, v.crf, v.preset)
                    found = rec.detect(e)
                    s = bool(found) and bool((box_iou([ref.face.box], [f.box for f in found]) >= SURVIVAL_IOU).any())
                    encoded[v.crf] = (e, s, quality(ref.image, e, out.mask) | _face_quality(ref.image, e, out.mask))
                img, surv, vq = encoded[v.crf]
            vemb = v.recogniser.embed(img, [ref.face])[0]
            vdist = float(distance(vemb, v.embeddings[i])[0, 0])
            result.views[v.key(spec.key)].faces.append(FaceResult(vdist, missed, surv, vq, vemb))
    return result


def rank1(
    probes: NDArray[np.float32],
    gallery: NDArray[np.float32],
    identities: Sequence[str],
    probe_ids: Sequence[int] | None = None,
) -> tuple[float | None, float | None, int]:
    """Leave-one-out rank-1 identification rate of ``probes`` against ``gallery``.

    Probe ``i`` is the anonymised version of gallery entry ``i``; it is matched against
    every other gallery entry. Only probes whose identity has another gallery photo
    take part.

    Args:
        probes: ``(N, D)`` embeddings, row ``i`` belongs to gallery row ``i``.
        gallery: ``(N, D)`` original embeddings.
        identities: identity of each row.
        probe_ids: rows to use as probes (default: all).

    Returns:
        ``(rate, chance, probes used)``; rates are ``None`` when no probe qualifies.
    """
    ids = np.asarray(identities)
    n = len(ids)
    rows = range(n) if probe_ids is None else probe_ids
    d = distance(probes, gallery)
    hits, chance, used = 0, 0.0, 0
    for i in rows:
        same = int((ids == ids[i]).sum()) - 1
        if same == 0 or n < 2:
            continue
        di = d[i].copy()
        di[i] = np.inf
        hits += int(ids[int(np.argmin(di))] == ids[i])
        chance += same / (n - 1)
        used += 1
    if not used:
        return None, None, 0
    return hits / used, chance / used, used


def summarise(
    refs: Sequence[Reference], result: MethodResult, threshold: float, probe_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """The JSON block of one method (fractions in 0..1)."""
    rows = list(range(len(refs))) if probe_ids is None else list(probe_ids)
    faces = [result.faces[i] for i in rows]
    n = len(faces)
    gallery = np.stack([r.embedding for r in refs])
    probes = np.stack([f.embedding for f in result.faces])
    r1, chance, used = rank1(probes, gallery, [r.identity for r in refs], rows)
    leaked = sum(1 for f in faces if f.missed or f.distance < threshold)
    dists = np.array([f.distance for f in faces], np.float64)
    qrows = [f.quality for f in faces]
    out: dict[str, Any] = {
        "faces": n,
        "verification_leakage": leaked / n if n else None,
        "leaked": leaked,
        "missed": sum(1 for f in faces if f.missed),
        "rank1": r1,
        "chance": chance,
        "rank1_probes": used,
        "detection_survival": sum(1 for f in faces if f.survived) / n if n else None,
        "distance_mean": float(dists.mean()) if n else None,
        "distance_min": float(dists.min()) if n else None,
        "defeated": (n - leaked) / n if n else None,
    }
    for key in ("psnr", "ssim", "ms_ssim", "psnr_outside", "ssim_outside", "ms_ssim_outside", "psnr_face", "ssim_face"):
        out[key] = mean_of(qrows, key)
    return out


def evaluate_identity(
    refs: Sequence[Reference],
    product: ProductRunner,
    rec: Recogniser,
    specs: Sequence[MethodSpec],
    keep_rows: Collection[int] = (),
    progress: Callable[[str], None] | None = None,
    views: Sequence[View] = (),
) -> tuple[dict[str, Any], dict[str, MethodResult]]:
    """Score every method on every reference face (and in every extra view).

    Returns:
        ``({"methods": {key: summary}, "control": {...}}, raw results per method)``; a
        view's summary is keyed ``View.key(method)`` and follows its method's.
    """
    methods: dict[str, Any] = {}
    raw: dict[str, MethodResult] = {}
    for spec in specs:
        if progress:
            progress(spec.key)
        res = anonymise_faces(refs, product, rec, spec, keep_rows=keep_rows, views=views)
        raw[spec.key] = res
        methods[spec.key] = summarise(refs, res, rec.threshold)
        for v in views:
            vrefs = [dataclasses.replace(r, embedding=v.embeddings[i]) for i, r in enumerate(refs)]
            methods[v.key(spec.key)] = summarise(vrefs, res.views[v.key(spec.key)], v.recogniser.threshold) | {
                "recogniser": v.recogniser.name,
                "encode_crf": v.crf,
            }
    out: dict[str, Any] = {"methods": methods}
    if "none" in methods:
        leak = methods["none"]["verification_leakage"]
        ok = leak is not None and leak >= CONTROL_MIN_LEAKAGE
        out["control"] = {"method": "none", "verification_leakage": leak, "min": CONTROL_MIN_LEAKAGE, "ok": ok}
    return out, raw
