"""Training the face generator: a small landmark-conditioned inpainting network that paints a
new face into the region the product replaces.

Training and export need PyTorch (``pip install 'streamanon[torch]'``) and live in
``model``, ``train``, ``export`` and ``cli``. This package is a consumer of the core:
running an exported model is ``streamanon.models.generator`` and the chip geometry is
``streamanon.anonymize.generator_chip``. Nothing here imports torch at package import time.
"""

from __future__ import annotations
