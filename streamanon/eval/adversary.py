"""``eval adversary``: an adversary who knows the method fine-tunes a recogniser on its output.

Off-the-shelf recognisers overstate what anonymisation protects (Hanisch et al., "A False
Sense of Privacy", 2023): an attacker who knows the method anonymises faces of people
they know, fine-tunes a recogniser on them, and then links anonymised faces of other
people to their originals, or to each other, far above an off-the-shelf model.

Per identity set (one ``--faces`` entry) and method:

1. every photo's face is found by dlib in the ORIGINAL (box + 5 landmarks, as ``eval
   identity``); the product anonymises the photo; dlib's 150x150 chip is cut at the
   original's landmarks from the original and from the anonymised image;
2. identities are split, disjointly, into training and test identities (``holdout``:
   the share of identities with at least two photos that is kept for the test);
3. the adversary: dlib's ResNet (the torch port, ``dlib_torch``) with its trunk frozen and
   its last ``blocks`` residual block(s), its 256->128 layer and a new 128->128
   projection trained with a batch-hard triplet loss on the training identities' chips,
   originals and anonymised mixed (an anonymised face is pulled to every photo of its
   person, original or anonymised, and pushed from other people's);
4. on the test identities, for dlib (off the shelf), FaceRes (off the shelf) and the
   adversary: ``rank1`` - an anonymised probe is matched against the gallery of every
   OTHER original photo of the test identities (leave-one-out, as ``eval identity``),
   ``chance`` the rate of a random guess; ``linkage_auc`` and ``tar_at_1fmr`` - pairs of
   anonymised faces of the test identities, same person (two photos) against different
   people, scored by their embedding distance.

The headline of a method is its worst case over the identity sets and the recognisers:
the entry with the largest ``rank1 - chance`` (``rank1``, ``chance``, ``worst_of``) and
the largest ``linkage_auc``; ``holds`` says whether that rank-1 is within
``HOLD_MARGIN`` of chance. Numbers only; no face crop is written.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..errors import AnonymizationError, ConfigError
from ..models.dlib_torch import extract_image_chips, face_chip_details, load_dlib_resnet, residual_blocks
from ..models.recognizer import distance
from .faceres import pair_auc
from .identity import Reference, rank1
from .product import MethodSpec, ProductRunner

log = logging.getLogger(__name__)

#: A method "holds" when the adversary's rank-1 is at most chance plus this.
HOLD_MARGIN = 0.05
#: Triplet loss margin on L2-normalised embeddings.
MARGIN = 0.3
#: An epoch has at least this many batches: a set of a few dozen faces is one or two PK
#: batches, and a handful of steps leaves the head where dlib put it (measured: 5 epochs of
#: 3 steps left the triplet loss at the margin for every method but the control).
MIN_STEPS = 25
DEFAULT_METHODS = "none,solid,blur,pixelate,dp-pixelate,k-same,svd,generate,adversarial"


@dataclass(frozen=True)
class AdversaryOptions:
    """Training settings of the adversary (see the module doc)."""

    epochs: int = 10
    blocks: int = 1
    holdout: float = 0.5
    batch_ids: int = 8
    per_id: int = 4
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.blocks < 1 or self.batch_ids < 2 or self.per_id < 2:
            raise ConfigError("adversary: epochs and blocks must be >= 1, batch_ids and per_id >= 2")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"invalid --holdout {self.holdout!r}: expected a number in (0, 1)")


@dataclass
class MethodFaces:
    """One method's anonymised faces of one identity set (row ``i`` is reference ``i``)."""

    chips: NDArray[np.uint8]  # (N, 150, 150, 3) at the original's landmarks
    faceres: NDArray[np.float32] | None = None  # (T, D) FaceRes embeddings of the test identities' anonymised faces


@dataclass
class IdentitySet:
    """The references of one ``--faces`` entry and the identity split."""

    name: str
    refs: list[Reference]
    train: list[int] = field(default_factory=list)  # reference rows of the training identities
    test: list[int] = field(default_factory=list)  # reference rows of the test identities

    @property
    def identities(self) -> list[str]:
        return [r.identity for r in self.refs]


def split_identities(identities: Sequence[str], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """Rows of training and test identities (disjoint); only identities with two or more
    photos can be test identities, ``holdout`` of them are (at least one, and one is left)."""
    by_id: dict[str, list[int]] = {}
    for i, name in enumerate(identities):
        by_id.setdefault(name, []).append(i)
    multi = sorted(n for n, rows in by_id.items() if len(rows) >= 2)
    if len(multi) < 2:
        raise ConfigError(f"need at least 2 identities with 2+ photos for a train/test split, found {len(multi)}")
    rng = np.random.default_rng(seed)
    order = [multi[i] for i in rng.permutation(len(multi))]
    n_test = min(len(multi) - 1, max(1, round(holdout * len(multi))))
    test_ids = set(order[:n_test])
    train = [i for n, rows in by_id.items() if n not in test_ids for i in rows]
    test = [i for n in sorted(test_ids) for i in by_id[n]]
    return sorted(train), test


# -- the adversary's network -------------------------------------------------------------------
class DlibSplit:
    """dlib's ResNet (torch port) cut before its last ``blocks`` residual blocks.

    ``trunk(chips)`` runs the frozen part once per chip (features kept in memory);
    ``new_head()`` is a trainable copy of the rest plus a projection.
    """

    def __init__(self, blocks: int = 1, device: str = "cpu") -> None:
        net: Any = load_dlib_resnet(device=device)
        self.net = net
        self.device = device
        n = len(net.down)
        if not 1 <= blocks < n:
            raise ConfigError(f"invalid --blocks {blocks}: expected 1 to {n - 1}")
        self.blocks = blocks
        self.cut = n - blocks  # residual blocks in the trunk

    def trunk(self, chips: NDArray[np.uint8], batch: int = 32) -> NDArray[np.float32]:
        """``(N, 150, 150, 3)`` chips -> features before the trainable blocks."""
        import torch
        import torch.nn.functional as F

        net = self.net
        outs = []
        with torch.no_grad():
            for i in range(0, len(chips), batch):
                x = torch.from_numpy(np.ascontiguousarray(chips[i : i + batch].transpose(0, 3, 1, 2)))
                x = (x.to(self.device, torch.float32) - net.mean) / 256.0
                x = F.max_pool2d(F.relu(net.convs[0](x)), 3, 2)
                x = residual_blocks(net.convs[1 : 1 + 2 * self.cut], net.down[: self.cut], x)
                outs.append(x.cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    def off_the_shelf(self, feats: NDArray[np.float32]) -> NDArray[np.float32]:
        """dlib's own 128-d descriptors from trunk features (equal to ``DlibTorchEmbedder``)."""
        import torch

        net = self.net
        with torch.no_grad():
            x = torch.from_numpy(feats).to(self.device)
            x = residual_blocks(net.convs[1 + 2 * self.cut :], net.down[self.cut :], x)
            out: NDArray[np.float32] = (x.mean(dim=(2, 3)) @ net.fc).cpu().numpy()
        return out

    def new_head(self) -> Any:
        """A trainable copy of the last blocks, dlib's fc and an identity-initialised projection."""
        import torch
        from torch import nn

        split = self

        class Head(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.convs = nn.ModuleList(copy.deepcopy(c) for c in split.net.convs[1 + 2 * split.cut :])
                for c in self.convs:
                    c.requires_grad_(True)
                self.down = list(split.net.down[split.cut :])
                self.fc = nn.Parameter(split.net.fc.detach().clone())
                self.proj = nn.Linear(128, 128)
                with torch.no_grad():
                    self.proj.weight.copy_(torch.eye(128))
                    self.proj.bias.zero_()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = residual_blocks(self.convs, self.down, x)
                e = self.proj(x.mean(dim=(2, 3)) @ self.fc)
                out: torch.Tensor = nn.functional.normalize(e, dim=1)
                return out

        return Head().to(self.device)


def _batch_hard(emb: Any, labels: Any) -> Any:
    """Batch-hard triplet loss (Hermans et al. 2017) on L2-normalised embeddings."""
    import torch

    d = torch.cdist(emb, emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = torch.where(same & ~eye, d, torch.zeros_like(d)).max(dim=1).values
    neg = torch.where(~same, d, torch.full_like(d, 1e6)).min(dim=1).values
    return torch.relu(pos - neg + MARGIN).mean()


def train_adversary(
    split: DlibSplit, feats: NDArray[np.float32], labels: NDArray[np.int64], opts: AdversaryOptions
) -> tuple[Any, list[float]]:
    """Fine-tune a head on trunk ``feats`` with identity ``labels``; returns it and the loss per epoch.

    An epoch is as many PK batches (``batch_ids`` identities x ``per_id`` samples, drawn
    with replacement inside an identity) as cover the samples once, at least ``MIN_STEPS``.
    """
    import torch

    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    head = split.new_head()
    optim = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=opts.lr)
    by_label: dict[int, NDArray[np.intp]] = {int(k): np.flatnonzero(labels == k) for k in np.unique(labels)}
    keys = np.array(sorted(by_label))
    p = min(opts.batch_ids, len(keys))
    steps = max(MIN_STEPS, math.ceil(len(labels) / (p * opts.per_id)))
    x_all = torch.from_numpy(feats)
    losses: list[float] = []
    head.train()
    for _ in range(opts.epochs):
        total = 0.0
        for _ in range(steps):
            ids = rng.choice(keys, size=p, replace=False)
            rows = np.concatenate([rng.choice(by_label[int(k)], size=opts.per_id) for k in ids])
            x = x_all[torch.from_numpy(rows)].to(split.device)
            y = torch.from_numpy(np.repeat(ids, opts.per_id))
            loss = _batch_hard(head(x), y.to(split.device))
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += float(loss.detach())
        losses.append(round(total / steps, 4))
    head.eval()
    return head, losses


def embed_head(head: Any, feats: NDArray[np.float32], batch: int = 128) -> NDArray[np.float32]:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(feats), batch):
            out.append(head(torch.from_numpy(feats[i : i + batch])).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


# -- metrics ------------------------------------------------------------------------------
def tar_at_fmr(pos: NDArray[np.float64], neg: NDArray[np.float64], fmr: float = 0.01) -> float | None:
    """Share of same-person pairs accepted at the threshold that accepts ``fmr`` of the others."""
    if not len(pos) or not len(neg):
        return None
    thr = np.quantile(neg, 1.0 - fmr)
    return float((pos > thr).mean())


def linkage(emb: NDArray[np.float32], identities: Sequence[str]) -> dict[str, Any]:
    """Verification of anonymised faces against each other: AUC and TAR at 1% FMR."""
    ids = np.asarray(identities)
    d = distance(emb, emb).astype(np.float64)
    iu = np.triu_indices(len(ids), 1)
    same = (ids[:, None] == ids[None, :])[iu]
    score = -d[iu]
    pos, neg = score[same], score[~same]
    return {
        "linkage_auc": pair_auc(d[iu], same) if len(pos) and len(neg) else None,
        "tar_at_1fmr": tar_at_fmr(pos, neg),
        "pairs_same": len(pos),
        "pairs_other": len(neg),
    }


def scores(probes: NDArray[np.float32], gallery: NDArray[np.float32], identities: Sequence[str]) -> dict[str, Any]:
    """rank-1 / chance (probes vs originals, leave-one-out) and linkage of the probes."""
    r1, chance, used = rank1(probes, gallery, identities)
    return {"rank1": r1, "chance": chance, "probes": used} | linkage(probes, identities)


# -- one identity set ----------------------------------------------------------------------
def anonymised_faces(
    refs: Sequence[Reference],
    product: ProductRunner,
    spec: MethodSpec,
    faceres: Any = None,
    faceres_rows: Sequence[int] = (),
) -> MethodFaces:
    """The product's output of every reference photo, as dlib chips at the original's
    landmarks; with ``faceres``, the FaceRes embeddings of the ``faceres_rows`` (in that
    order: the test identities', the only ones FaceRes scores)."""
    product.prepare([r.image for r in refs], spec)
    chips: list[NDArray[np.uint8]] = []
    fr: dict[int, NDArray[np.float32]] = {}
    wanted = set(faceres_rows) if faceres is not None else set()
    for i, ref in enumerate(refs):
        try:
            out = product.run(ref.image, spec, photo=i).image
        except AnonymizationError:  # the product masked the whole photo: what it wrote
            out = np.zeros_like(ref.image)
        chips.append(extract_image_chips(out, [face_chip_details(ref.face)])[0])
        if i in wanted:
            fr[i] = faceres.embed(out, [ref.face])[0]
    return MethodFaces(np.stack(chips), np.stack([fr[i] for i in faceres_rows]) if fr else None)


def evaluate_set(
    iset: IdentitySet,
    product: ProductRunner,
    specs: Sequence[MethodSpec],
    split: DlibSplit,
    opts: AdversaryOptions,
    faceres: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every method on one identity set: off-the-shelf and adversary scores on the test identities."""
    refs = iset.refs
    ids = iset.identities
    orig_chips = np.stack([extract_image_chips(r.image, [face_chip_details(r.face)])[0] for r in refs])
    orig_feats = split.trunk(orig_chips)
    test = iset.test
    test_ids = [ids[i] for i in test]
    gallery_dlib = split.off_the_shelf(orig_feats[test])
    gallery_fr = np.stack([faceres.embed(refs[i].image, [refs[i].face])[0] for i in test]) if faceres else None
    label_of = {n: k for k, n in enumerate(sorted(set(ids)))}
    out: dict[str, Any] = {}
    for spec in specs:
        if progress:
            progress(f"{iset.name}: {spec.key}")
        faces = anonymised_faces(refs, product, spec, faceres, test)
        feats = split.trunk(faces.chips)
        by: dict[str, Any] = {"dlib": scores(split.off_the_shelf(feats[test]), gallery_dlib, test_ids)}
        if faces.faceres is not None and gallery_fr is not None:
            by["faceres"] = scores(faces.faceres, gallery_fr, test_ids)
        # the adversary: trained on the training identities' originals and anonymised faces
        train = iset.train
        x = np.concatenate([orig_feats[train], feats[train]])
        y = np.array([label_of[ids[i]] for i in train] * 2, np.int64)
        head, losses = train_adversary(split, x, y, opts)
        adv = scores(embed_head(head, feats[test]), embed_head(head, orig_feats[test]), test_ids)
        by["adversary"] = adv | {"train_loss": losses}
        out[spec.key] = {"by_recogniser": by}
    return out


def headline(per_set: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per method: the worst case over identity sets and recognisers (module doc)."""
    methods: dict[str, Any] = {}
    keys = [k for s in per_set.values() for k in s]
    for key in dict.fromkeys(keys):
        worst: tuple[float, str, dict[str, Any]] | None = None
        auc: tuple[float, str] | None = None
        for set_name, res in per_set.items():
            for rec_name, sc in res.get(key, {}).get("by_recogniser", {}).items():
                where = f"{set_name}/{rec_name}"
                if sc["rank1"] is not None and (worst is None or sc["rank1"] - sc["chance"] > worst[0]):
                    worst = (sc["rank1"] - sc["chance"], where, sc)
                if sc["linkage_auc"] is not None and (auc is None or sc["linkage_auc"] > auc[0]):
                    auc = (sc["linkage_auc"], where)
        m: dict[str, Any] = {
            "rank1": None if worst is None else worst[2]["rank1"],
            "chance": None if worst is None else worst[2]["chance"],
            "worst_of": None if worst is None else worst[1],
            "linkage_auc": None if auc is None else auc[0],
            "linkage_worst_of": None if auc is None else auc[1],
        }
        m["holds"] = None if worst is None else bool(worst[0] <= HOLD_MARGIN)
        methods[key] = m
    return methods


T = TypeVar("T")


def subsample(items: Sequence[T], max_identities: int, max_photos: int, seed: int) -> list[T]:
    """At most ``max_photos`` photos (items with an ``identity``) of each identity and, when
    ``max_identities`` > 0, that many identities drawn (seeded) among those with two or more photos."""
    by_id: dict[str, list[T]] = {}
    for r in items:
        by_id.setdefault(str(getattr(r, "identity")), []).append(r)  # noqa: B009
    names = sorted(by_id)
    if max_identities > 0:
        multi = [n for n in names if len(by_id[n]) >= 2]
        rng = np.random.default_rng(seed)
        names = sorted(multi[i] for i in rng.permutation(len(multi))[:max_identities])
    out: list[T] = []
    for n in names:
        out.extend(by_id[n][:max_photos] if max_photos > 0 else by_id[n])
    return out


def options_dict(opts: AdversaryOptions) -> dict[str, Any]:
    return dataclasses.asdict(opts) | {"margin": MARGIN, "hold_margin": HOLD_MARGIN}
