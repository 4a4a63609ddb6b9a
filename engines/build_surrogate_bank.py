#!/usr/bin/env python3
"""Build engines/surrogate-bank.npz, the default bank of ``--method surrogate`` (run once).

Composites of k persons each from the shared data's CelebA-HQ folders (terms in
``engines/SURROGATE_BANK_CARD.md``), every one checked to be within neither dlib's 0.6 nor
FaceRes's 1%-false-match threshold of any bank person (``streamanon.anonymize.surrogate_bank``).
Needs dlib and face_recognition_models (the ``eval`` extra) and ``engines/faceres.onnx``.
Then put the printed sha256 into ``engines/registry.json`` (``surrogate-bank``).

    python engines/build_surrogate_bank.py [--data ../shared/data] [-o engines/surrogate-bank.npz] [--seed 0]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamanon.anonymize.surrogate_bank import main

if __name__ == "__main__":
    code = main(["build", *sys.argv[1:]])
    out = Path(sys.argv[sys.argv.index("-o") + 1]) if "-o" in sys.argv else Path("engines/surrogate-bank.npz")
    print(f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}  {out}")
    raise SystemExit(code)
