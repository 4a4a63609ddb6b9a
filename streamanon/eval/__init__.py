"""Privacy and quality measurement: ``streamanon eval identity|attack|detect|video``.

Modules:

- ``streamanon.models.recognizer`` (core): the ``Recogniser`` protocol and dlib's ResNet;
- :mod:`.product`: runs the product's own pipeline on stills (padding tight crops);
- :mod:`.identity`: verification leakage, rank-1 identification, detection survival, quality;
- :mod:`.attack`: a learned inversion attack (PyTorch, optional);
- :mod:`.detection` and :mod:`.data`: detector precision/recall/AP against face boxes;
- :mod:`.video`: recognisable faces left in an anonymised video;
- :mod:`.metrics` and :mod:`.report`: PSNR/SSIM/MS-SSIM, AP, offline HTML reports.
- :mod:`.cli`: the ``streamanon eval`` parsers; :mod:`.commands_privacy`, :mod:`.commands_quality`
  and :mod:`.commands_common`: its commands.

Heavy dependencies (dlib, torch, matplotlib) are imported only where used.
"""

from __future__ import annotations

__all__: list[str] = []
