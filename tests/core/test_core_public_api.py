import subprocess
import sys

import streamanon


def test_exported_members() -> None:
    for name in streamanon.__all__:
        assert hasattr(streamanon, name), name
        member = getattr(streamanon, name)
        if callable(member) and name != "__version__":
            assert member.__doc__, f"{name} has no docstring"


def test_import_has_no_heavy_side_effects() -> None:
    heavy = ("ray", "torch", "dlib", "matplotlib", "prometheus_client")
    code = f"import sys, streamanon; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
