"""``--device auto`` and ``--dtype auto``: the accelerator the autoencoders run on, and whether
this CPU computes bf16 natively, found without importing torch.

A warm re-run that the score store answers must not pay torch's import (docs/performance.md), so
the choice is read from what is installed: torch's own build record (``torch/version.py``: a
CUDA build names its CUDA version) and the NVIDIA driver's presence, or Apple silicon for MPS.
When torch is already imported its own answer is used. The CPU's bf16 support is read from the
flags the kernel reports.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
CPU_INFO = Path("/proc/cpuinfo")
NATIVE_BF16_ENV = "AEDR_NATIVE_BF16"
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""x86 instructions that compute bf16 products in hardware. Without them torch emulates bf16,
which is slower than fp32 (2.2x slower on an AVX-512 Ice Lake: docs/performance.md)."""


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


def native_bf16(cpu_info: Path | None = None) -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), from the kernel's CPU
    flags (``cpu_info``, default ``/proc/cpuinfo``); False where they cannot be read (other
    systems and architectures: not measured). ``$AEDR_NATIVE_BF16`` (1 or 0) overrides the
    flags, e.g. where a virtual machine hides them."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return not NATIVE_BF16_FLAGS.isdisjoint(_cpu_flags(cpu_info or CPU_INFO))


@functools.cache
def _cpu_flags(cpu_info: Path) -> frozenset[str]:
    try:
        text = cpu_info.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()
