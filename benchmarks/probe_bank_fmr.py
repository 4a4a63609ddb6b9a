"""How often do a bank's composites match strangers? False-match rate against a folder of persons
outside the bank and the evaluation (default: the shared UTKFace folder, one photo per person).

For every composite of each bank file and every stranger: dlib distance < 0.6 and FaceRes
distance < its 1%-false-match threshold. Prints the pair rate (FMR) and how many composites match
at least one stranger. Nothing is written.

    python benchmarks/probe_bank_fmr.py BANK.npz [BANK.npz ...] [--strangers DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("STREAMANON_DATA", "../shared/data"))


def main() -> int:
    from streamanon.anonymize import surrogate_bank as sb
    from streamanon.models.faceres import THRESHOLD as FACERES_THRESHOLD
    from streamanon.models.recognizer import THRESHOLD as DLIB_THRESHOLD
    from streamanon.models.recognizer import distance

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("banks", type=Path, nargs="+")
    p.add_argument("--strangers", type=Path, default=DATA / "identities_extra" / "bagashvilit__facial_recognition_bias")
    ns = p.parse_args()
    people = sb.load_photos([ns.strangers])  # one photo per person, its recogniser vectors
    rec, fr = people.dlib_rec, people.faceres
    dl = np.stack([q.dlib for q in people.photos])
    fe = np.stack([q.faceres for q in people.photos])
    found = people.photos
    print(f"{len(found)} strangers ({ns.strangers})")
    for path in ns.banks:
        bank = sb.SurrogateBank.load(path)
        near_d, near_f, hits_d, hits_f = [], [], 0, 0
        for comp in bank.faces:
            face = sb.composite_face(rec, comp, bank.shape)
            d = distance(rec.embed(comp, [face]), dl)[0]
            f = distance(fr.analyse(comp, [face])[0].embedding[None], fe)[0]
            near_d.append(float(d.min()))
            near_f.append(float(f.min()))
            hits_d += int((d < DLIB_THRESHOLD).sum())
            hits_f += int((f < FACERES_THRESHOLD).sum())
        n = len(bank) * len(found)
        print(
            f"{path}: {n} pairs: FMR dlib {hits_d / n:.4f}, FaceRes {hits_f / n:.4f}; composites matching a "
            f"stranger: dlib {sum(x < DLIB_THRESHOLD for x in near_d)}, "
            f"FaceRes {sum(x < FACERES_THRESHOLD for x in near_f)} of {len(bank)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
