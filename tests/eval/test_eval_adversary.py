"""``eval adversary``: end to end on a few real identities (1 epoch), and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamanon.cli import main
from streamanon.errors import ConfigError
from streamanon.eval.adversary import headline, roc_auc, split_identities, subsample, tar_at_fmr

pytest.importorskip("dlib")
pytest.importorskip("torch")


def test_end_to_end_copy_is_linked_solid_is_not(data_dir: Path, tmp_path: Path) -> None:
    ids = data_dir / "identities"
    out = tmp_path / "adv.json"
    faces = f"{ids / 'dlib_johns'},{ids / 'face-api.js_bbt'}"
    sizes = ["--epochs", "1", "--max-identities", "6", "--max-photos", "3"]
    args = ["adversary", "--faces", faces, "--methods", "none,solid", *sizes, "--recognisers", "dlib"]
    code = main(["eval", *args, "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    for name in ("none", "solid"):
        assert {"rank1", "chance", "linkage_auc", "holds", "worst_of"} <= set(res["methods"][name])
    (ds,) = res["datasets"].values()
    assert ds["identities"] == 6 and ds["test_identities"] >= 2 and ds["train_identities"] >= 2
    (per_set,) = res["sets"].values()
    for rec in ("dlib", "adversary"):
        copy = per_set["none"]["by_recogniser"][rec]
        assert copy["rank1"] >= 0.9 and copy["linkage_auc"] >= 0.95, (rec, copy)
        solid = per_set["solid"]["by_recogniser"][rec]
        assert solid["rank1"] <= solid["chance"] + 0.3 and solid["linkage_auc"] <= 0.75, (rec, solid)
    assert len(per_set["solid"]["by_recogniser"]["adversary"]["train_loss"]) == 1
    m = res["methods"]
    assert m["none"]["holds"] is False and m["none"]["linkage_auc"] >= 0.95
    assert m["solid"]["linkage_auc"] <= 0.75


def test_split_is_identity_disjoint() -> None:
    ids = ["a", "a", "b", "b", "b", "c", "d", "d", "e", "e"]
    train, test = split_identities(ids, 0.5, seed=3)
    assert sorted(train + test) == list(range(len(ids)))
    assert not {ids[i] for i in train} & {ids[i] for i in test}
    assert "c" not in {ids[i] for i in test}  # one photo: training only
    assert len({ids[i] for i in test}) == 2
    with pytest.raises(ConfigError):
        split_identities(["a", "a", "b"], 0.5, 0)


def test_metrics() -> None:
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    neg = np.linspace(0, 1, 1001)
    assert tar_at_fmr(np.array([0.995, 0.5, 2.0]), neg) == pytest.approx(2 / 3)
    per_set = {
        "A": {"m": {"by_recogniser": {"dlib": _sc(0.3, 0.2, 0.6), "adversary": _sc(0.5, 0.2, 0.8)}}},
        "B": {"m": {"by_recogniser": {"dlib": _sc(0.1, 0.05, 0.9)}}},
    }
    h = headline(per_set)["m"]
    assert h["worst_of"] == "A/adversary" and h["rank1"] == 0.5 and h["chance"] == 0.2
    assert h["linkage_auc"] == 0.9 and h["linkage_worst_of"] == "B/dlib" and h["holds"] is False


def _sc(r1: float, chance: float, auc: float) -> dict[str, float]:
    return {"rank1": r1, "chance": chance, "linkage_auc": auc}


def test_subsample_draws_multi_photo_identities() -> None:
    class R:
        def __init__(self, identity: str) -> None:
            self.identity = identity

    refs = [R(n) for n in ["a"] * 5 + ["b"] + ["c"] * 2 + ["d"] * 3]
    out = subsample(refs, 2, 2, seed=0)  # type: ignore[arg-type]
    names = [r.identity for r in out]
    assert len(set(names)) == 2 and "b" not in names and all(names.count(n) == 2 for n in set(names))
