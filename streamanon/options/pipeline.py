"""The pipeline's options (``PipelineConfig``): anonymisation, selective anonymisation,
detection and tracking, encoding. Part of ``streamanon.options`` (its ``OPTIONS``)."""

from __future__ import annotations

from ..anonymize import METHODS
from ..config import BACKENDS, DECODE_DEVICES, PRECISIONS
from .option import _A, _D, _E, _S, NO_EVAL, NO_STREAMS, Option, _a, _d, _io, _o, _t

PIPELINE_OPTIONS: tuple[Option, ...] = (
    # -- anonymisation ----------------------------------------------------------------------------
    _o(
        "--method",
        f"one of: {', '.join(sorted(METHODS))} (default {_a.method}; generate requires "
        "'pip install streamanon[align]', adversarial 'pip install streamanon[torch]')",
        _A,
        "anonymize.method",
    ),
    _o("--shape", "mask shape (default ellipse)", _A, "anonymize.shape", choices=("ellipse", "box")),
    _o("--mask-scale", "grow masks by this factor (default 1.3)", _A, "anonymize.mask_scale", kind="float"),
    _o(
        "--mask-margin",
        f"then by this many pixels on every side (default {_a.mask_margin:g})",
        _A,
        "anonymize.mask_margin",
        kind="float",
    ),
    _o("--color", "fill colour for --method solid (R,G,B or #RRGGBB)", _A, "anonymize.color", kind="color"),
    _o(
        "--blur-strength",
        "blur radius multiplier (default 1)",
        _A,
        "anonymize.blur_strength",
        kind="float",
        eval_keys={"blur": "strength"},
    ),
    _o(
        "--pixel-blocks",
        "mosaic blocks across a face (default 8)",
        _A,
        "anonymize.pixel_blocks",
        kind="int",
        eval_keys={"pixelate": "blocks"},
    ),
    _o("--feather", "soft mask edge, fraction of the face (default 0)", _A, "anonymize.feather", kind="float"),
    _o(
        "--epsilon",
        "privacy parameter of dp-pixelate (per channel and track, default 1) "
        "and svd (per unit of singular value, default 0.01); "
        "for adversarial the L-inf bound in /255 code values (default 6)",
        _A,
        "anonymize.epsilon",
        kind="float",
        eval_keys={"dp-pixelate": "eps", "svd": "eps", "adversarial": "eps", "generate": "adv"},
    ),
    _o(
        "--dp-cells",
        f"dp-pixelate: cells across the face (default {_a.dp_cells})",
        _A,
        "anonymize.dp_cells",
        kind="int",
        eval_keys={"dp-pixelate": "cells"},
    ),
    _o(
        "--dp-m",
        f"dp-pixelate: pixels two neighbouring images may differ in (default {_a.dp_m})",
        _A,
        "anonymize.dp_m",
        kind="int",
        eval_keys={"dp-pixelate": "m"},
    ),
    _o(
        "--k",
        f"k-same, surrogate with a --face-bank folder: persons averaged into each surrogate (default {_a.k})",
        _A,
        "anonymize.k",
        kind="int",
        eval_keys={"k-same": "k", "adversarial": "k"},
    ),
    _o(
        "--keep",
        "surrogate: draw each face's composite from bank composites of the original's gender and/or "
        "age band (FaceRes estimates them once per track)",
        _A,
        "anonymize.keep",
        kind="list",
        metavar="gender,age",
        modes=NO_EVAL,  # eval temporal has a --keep DIR of its own
        eval_keys={"surrogate": "keep"},  # eval --methods surrogate:keep=gender
    ),
    _o(
        "--face-bank",
        "k-same: folder of face images added to the pool; surrogate: a bank .npz or a folder of "
        "<person>/<photo> sub-folders of consenting people (composites built at start)",
        _A,
        "anonymize.face_bank",
        metavar="DIR",
        eval_keys={"k-same": "bank", "adversarial": "bank"},
    ),
    _o(
        "--svd-k",
        f"svd: singular values kept per channel (default {_a.svd_k})",
        _A,
        "anonymize.svd_k",
        kind="int",
        eval_keys={"svd": "k"},
    ),
    _o(
        "--svd-size",
        f"svd: aligned chip side in pixels (default {_a.svd_size})",
        _A,
        "anonymize.svd_size",
        kind="int",
        eval_keys={"svd": "size"},
    ),
    _o(
        "--landmarks",
        "k-same/svd align faces on the detector's 5 points (default) or dlib's 68 (pip install 'streamanon[align]')",
        _A,
        "anonymize.landmarks",
        choices=("5", "68"),
    ),
    _o(
        "--steps",
        f"adversarial: PGD steps a frame from the track's last perturbation (default {_a.adv_steps}; "
        "a track's first frame: 20)",
        _A,
        "anonymize.adv_steps",
        kind="int",
        eval_keys={"adversarial": "steps", "generate": "steps"},
    ),
    _o(
        "--objective",
        "adversarial: away from the face's own embedding (default), towards a secret per-track decoy from "
        "--face-bank, or k-anonymity against --face-bank (--k)",
        _A,
        "anonymize.adv_objective",
        choices=("untargeted", "targeted", "k-anonymity"),
        eval_keys={"adversarial": "objective", "generate": "objective"},
    ),
    _o(
        "--no-eot",
        "adversarial: no expectation over encoder-like transformations (less robust to encoding)",
        _A,
        "anonymize.adv_eot",
        kind="bool",
        invert=True,
    ),
    _o(
        "--device",
        "adversarial: torch device (default cpu)",
        _A,
        "anonymize.device",
        choices=("cpu", "cuda"),
    ),
    _o(
        "--adversarial",
        "generate: then perturb the generated face (at most --epsilon /255 inside its mask) so that dlib's "
        "recogniser moves away from the original face (--steps, --objective, --no-eot, --device as for adversarial)",
        _A,
        "anonymize.generate_adversarial",
        kind="bool",
    ),
    _o(
        "--generator",
        "generate: exported generator ONNX (default: the shipped engines/generator-64.onnx; a TensorRT engine "
        "built for it by build_engines.py is used where available)",
        _A,
        "anonymize.generator",
        metavar="PATH",
        eval_keys={"generate": "model"},
    ),
    _o(
        "--generate-fallback",
        "generate: what faces the generator cannot serve get (too small, no landmarks, extreme pose; default blur)",
        _A,
        "anonymize.generate_fallback",
        choices=("blur", "solid"),
        eval_keys={"generate": "fallback"},
    ),
    _o(
        "--generate-min-size",
        f"generate: smallest face box side it generates (default {_a.generate_min_size}); "
        "smaller ones get the fallback",
        _A,
        "anonymize.generate_min_size",
        kind="int",
        metavar="PX",
        eval_keys={"generate": "min"},
    ),
    _o(
        "--seed",
        "seed of the randomised methods (default: a fresh secret each run)",
        _A,
        "anonymize.seed",
        kind="int",
        modes=NO_EVAL,  # eval's subcommands have a --seed of their own (default 0)
    ),
    # -- selective anonymisation ------------------------------------------------------------------
    _o(
        "--only-region",
        "anonymise only inside this rectangle (or polygon X0,Y0,X1,Y1,X2,Y2,...; "
        "pixels, or relative when all values are in [0, 1]); repeatable",
        _S,
        "anonymize.only_regions",
        kind="region",
        repeat=True,
        metavar="X0,Y0,X1,Y1",
    ),
    _o(
        "--ignore-region",
        "never change the pixels of this rectangle or polygon (burned-in overlays, a private garden); repeatable",
        _S,
        "anonymize.ignore_regions",
        kind="region",
        repeat=True,
        metavar="X0,Y0,X1,Y1",
    ),
    _o(
        "--keep-face",
        "leave this consenting person visible: a photo with exactly one face; "
        "only a confident, repeated match is kept (dlib's recogniser: pip install 'streamanon[eval]'); repeatable",
        _S,
        "anonymize.keep_faces",
        repeat=True,
        metavar="PHOTO",
    ),
    # -- detection and tracking ------------------------------------------------------------------
    _o(
        "--threshold",
        f"face score threshold (default {_d.threshold})",
        _D,
        "detect.threshold",
        kind="float",
        shared=True,
    ),
    _o(
        "--det-size",
        "network input long side (default: native resolution, at most 1920; "
        "live feeds: the largest that keeps up with the frame rate)",
        _D,
        "detect.det_size",
        kind="int",
        shared=True,
    ),
    _o("--batch", f"frames per detector call (default {_d.batch})", _D, "detect.batch", kind="int", shared=True),
    _o(
        "--providers",
        "ONNX Runtime providers, comma separated, or 'auto'",
        _D,
        "detect.providers",
        kind="list",
        shared=True,
    ),
    _o(
        "--threads",
        "CPU threads per detector call (default: all cores but one, split over --detect-workers)",
        _D,
        "detect.threads",
        kind="int",
        shared=True,
    ),
    _o(
        "--detect-workers",
        "detector calls run at once on consecutive frames (default: 2 for a CPU backend with 2+ cores, else 1)",
        _D,
        "detect.workers",
        kind="int",
        shared=True,
    ),
    _o(
        "--backend",
        "inference backend (default auto: TensorRT, else ONNX Runtime on a GPU, else OpenVINO, "
        "else ONNX Runtime on the CPU)",
        _D,
        "detect.backend",
        choices=BACKENDS,
        shared=True,
    ),
    _o(
        "--precision",
        "network precision (default auto: fp16 on TensorRT, bf16 on OpenVINO where the CPU has it natively, else fp32)",
        _D,
        "detect.precision",
        choices=PRECISIONS,
        shared=True,
    ),
    _o(
        "--engine-dir",
        "folder of TensorRT engines built by build_engines.py",
        _D,
        "detect.engine_dir",
        shared=True,
    ),
    _o(
        "--detect-every",
        f"run the detector every N frames (default {_t.detect_every})",
        _D,
        "track.detect_every",
        kind="int",
    ),
    _o(
        "--max-coast",
        f"keep masking a lost face for N frames (default {_t.max_coast})",
        _D,
        "track.max_coast",
        kind="int",
    ),
    _o("--no-track", "mask raw detections only", _D, "track.enabled", kind="bool", invert=True),
    # small-face tiles keep a schedule per video (detect/tiles.py), which a detector shared by
    # several feeds cannot: not in streams
    _o(
        "--small-faces",
        "also detect on upscaled tiles (faces under ~32 px; costs time); "
        "auto: on for 1080p and larger frames, or when the first frames show faces under 32 px "
        "(files only, not live feeds) (default off: tiles cost 3-9x the speed)",
        _D,
        "detect.small_faces",
        choices=("auto", "on", "off"),
        modes=NO_STREAMS,
    ),
    _o(
        "--tile-scale",
        f"--small-faces: tile upscaling (default {_d.tile_scale:g})",
        _D,
        "detect.tile_scale",
        kind="float",
        modes=NO_STREAMS,
    ),
    _o(
        "--tile-every",
        f"--small-faces: visit each tile at least every N detector frames (default {_d.tile_every})",
        _D,
        "detect.tile_every",
        kind="int",
        modes=NO_STREAMS,
    ),
    _o(
        "--max-face-size",
        "drop detections larger than this (sqrt of the box area; drone footage)",
        _D,
        "detect.max_face_size",
        kind="float",
        metavar="PX",
        modes=NO_STREAMS,
    ),
    # -- encoding ---------------------------------------------------------------------------------
    _o("--codec", "video encoder (default libx264; webm->vp9, gif->gif)", _E, "io.codec"),
    _o(
        "--hwaccel",
        "hardware decode: auto (NVDEC when a CUDA device opens, else software), none, or a device "
        f"({', '.join(DECODE_DEVICES[:3])}...) that must open (default {_io.hwaccel})",
        _E,
        "io.hwaccel",
    ),
    _o(
        "--encoder",
        "hardware encode: none (--codec, in software), auto (h264_nvenc/hevc_nvenc for libx264/libx265 "
        f"when one opens, else --codec), or an encoder name that must open (default {_io.encoder})",
        _E,
        "io.encoder",
    ),
    _o("--crf", f"quality, lower is better (default {_io.crf})", _E, "io.crf", kind="int"),
    _o("--preset", f"encoder preset (default {_io.preset})", _E, "io.preset"),
    _o(
        "--encoder-opt",
        "extra encoder option (repeatable)",
        _E,
        "io.encoder_options",
        kind="kv",
        repeat=True,
        metavar="KEY=VALUE",
    ),
    _o("--no-audio", "drop audio (default: copied bit-exactly)", _E, "io.audio", kind="bool", invert=True),
    _o("--keep-metadata", "keep container/EXIF metadata (default: stripped)", _E, "io.keep_metadata", kind="bool"),
    _o(
        "--on-error",
        "a frame that fails is fully masked (default) or the run stops",
        _E,
        "io.on_error",
        choices=("mask-frame", "abort"),
    ),
)
