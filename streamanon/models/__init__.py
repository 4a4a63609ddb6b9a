"""The models the product runs, each found through the registry (``engines/registry.json``:
sha256, licence, layout) and loaded once per process (``store``).

- ``generator``: the face generator (``--method generate``) on the backend ``EngineConfig`` picks;
- ``landmarks``: dlib's 5- and 68-point shape predictors;
- ``recognizer``: dlib's ResNet recogniser, the ``Recogniser`` protocol and ``Face``;
- ``dlib_torch``: the PyTorch port of that recogniser and of dlib's chip extraction
  (``--method adversarial`` perturbs against it);
- ``dlib_weights``: the reader of that recogniser's ``.dat`` file (numpy arrays for the port);
- ``faceres``: FaceRes, a second recogniser with age and gender heads (evaluation);
- ``store``: the process-wide cache.

CenterFace, the detector, is ``streamanon.detect.centerface``. Nothing here imports torch or
dlib at import time.
"""
