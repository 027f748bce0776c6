"""``--device auto``: the accelerator the autoencoders run on, chosen without importing torch.

A warm re-run that the score store answers must not pay torch's import (docs/performance.md), so
the choice is read from what is installed: torch's own build record (``torch/version.py``: a
CUDA build names its CUDA version) and the NVIDIA driver's presence, or Apple silicon for MPS.
When torch is already imported its own answer is used.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def auto_device() -> str:
    """``cuda`` where a CUDA build of torch meets an NVIDIA driver (and ``CUDA_VISIBLE_DEVICES``
    does not hide every GPU), ``mps`` on Apple silicon, else ``cpu``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() not in ("", "-1")
    if visible and _cuda_build() and NVIDIA_DRIVER.exists():
        return "cuda"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def _cuda_build() -> bool:
    """Whether the installed torch was built with CUDA, read from its ``version.py``."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    record = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = record.read_text()
    except OSError:
        return False
    return re.search(r"^cuda\b[^=]*=\s*['\"]", text, flags=re.M) is not None
