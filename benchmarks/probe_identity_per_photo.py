"""``streamanon eval ...`` with a secret per photo: every product run of a method gets the secret
``eval natural`` gives it (``streamanon.eval.natural.photo_spec``: derived from ``--seed`` and the
photo's index), so a method that draws from the secret (``surrogate``) draws per photo, as
separate runs would. ``eval identity`` itself still gives every photo the same secret.

    python benchmarks/probe_identity_per_photo.py identity --faces DIR ... --methods surrogate \\
        --seed 0 --also faceres [--face-bank BANK.npz]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from streamanon.cli import main as cli_main
    from streamanon.eval import product
    from streamanon.eval.natural import photo_spec

    run = product.ProductRunner.run
    runs: dict[str, int] = {}

    def per_photo(self: Any, image: Any, spec: Any) -> Any:
        n = runs.get(spec.key, 0)
        runs[spec.key] = n + 1
        return run(self, image, photo_spec(spec, n))

    product.ProductRunner.run = per_photo  # type: ignore[method-assign]
    return int(cli_main(["eval", *sys.argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main())
