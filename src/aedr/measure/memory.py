"""The memory budget: what one double reconstruction will take, known before it runs.

An autoencoder's activations grow with the image's pixels (about 0.8 KB per pixel for the tiny
autoencoders, 3-4 KB for the SD VAE in float32), so a pixel limit alone does not bound memory:
a 4000x4000 image would need 13 GB with taesd and about 60 GB with the SD VAE. The peak is
estimated per model from its architecture: one double reconstruction of a small probe is run
while every tensor that torch's operators return is counted (a ``TorchDispatchMode``), and the
peak of the live bytes, per input pixel, scales to any size, since convolutional activations are
linear in pixels. Kernels' own work buffers are not seen by the count, hence ``HEADROOM``
(measured against the process's peak resident memory in docs/reliability.md).
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING

from aedr.measure.images import ImageError

if TYPE_CHECKING:
    import torch

    from aedr.autoencoders.base import Autoencoder

HEADROOM = 1.5
"""Estimate x this = the budgeted peak: the count misses kernels' work buffers (the SD VAE's
measured peak was 1.29x its count at 512 px on a CPU, taesd's 1.01x)."""
DEFAULT_SHARE = 0.75
"""Without ``--max-memory``, the budget is this share of the memory available at start-up."""
PROBE_SIDE = 64
"""The probe's side in pixels (rounded up to the model's grid)."""
GIB = 2**30


class MemoryBudgetError(ImageError):
    """An image whose measurement would need more memory than the budget allows."""


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes free for new work on ``device`` now: a GPU's free memory, or on a CPU the system's
    available memory (``MemAvailable``), capped by a container's (cgroup v2) limit; None where
    the system does not say."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    free = _meminfo_available()
    container = _cgroup_free()
    if free is None or container is None:
        return free if container is None else container
    return min(free, container)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # elsewhere (macOS): half the physical memory, a cautious guess
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_free(root: str = "/sys/fs/cgroup") -> int | None:
    try:
        with open(f"{root}/memory.max") as stream:
            limit = stream.read().strip()
        with open(f"{root}/memory.current") as stream:
            used = int(stream.read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def default_budget(device: str | torch.device = "cpu") -> int | None:
    """``DEFAULT_SHARE`` of the memory available on ``device`` now (None: no budget)."""
    free = available_memory(device)
    return None if free is None else int(free * DEFAULT_SHARE)


def peak_bytes_per_pixel(autoencoder: Autoencoder, side: int = PROBE_SIDE) -> float:
    """Peak bytes of tensors alive during one double reconstruction of a ``side`` square probe,
    per input pixel (the probe's own input not counted)."""
    import torch

    from aedr.measure.reconstruction import reconstruction_measures

    multiple = max(1, autoencoder.size_multiple)
    side = -(-side // multiple) * multiple
    probe = torch.zeros(1, 3, side, side)
    with _PeakCount() as count:
        reconstruction_measures(autoencoder, probe)
    return count.peak / side**2


class _PeakCount:
    """Counts the bytes of every storage torch's operators return, while they are alive."""

    def __enter__(self) -> _PeakCount:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        count = self
        self.live = self.peak = 0
        self.references: dict[tuple[str, int], int] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                for tensor in tree_flatten(result)[0]:
                    if hasattr(tensor, "untyped_storage"):
                        count._returned(tensor)
                return result

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._mode.__exit__(*exc_info)

    def _returned(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = (storage.device.type, storage.data_ptr()), storage.nbytes()
        if key not in self.references:  # a new storage (a view shares its base's)
            self.references[key] = 0
            self.live += size
            self.peak = max(self.peak, self.live)
        self.references[key] += 1
        weakref.finalize(tensor, self._released, key, size)

    def _released(self, key: tuple[str, int], size: int) -> None:
        self.references[key] -= 1
        if self.references[key] == 0:
            del self.references[key]
            self.live -= size


def check_budget(
    name: str, per_pixel: float, rows: int, cols: int, batch: int, budget: int | None,
) -> None:  # fmt: skip
    """Refuse a pass of ``batch`` inputs of ``rows`` x ``cols`` whose estimated peak
    (``per_pixel`` x pixels x ``HEADROOM``) exceeds ``budget`` bytes."""
    if budget is None:
        return
    needed = estimate(per_pixel, rows * cols * batch)
    if needed > budget:
        raise MemoryBudgetError(
            f"measuring {cols}x{rows} pixels with {name} needs about {size_text(needed)}, over "
            f"the memory budget of {size_text(budget)}"
        )


def size_text(size: int) -> str:
    """Bytes for people: ``0.25 GiB``, ``96 MiB``.

    >>> size_text(3 * 2**29), size_text(96 * 2**20)
    ('1.5 GiB', '96 MiB')
    """
    return f"{size / GIB:.3g} GiB" if size >= GIB // 4 else f"{size / 2**20:.3g} MiB"


def estimate(per_pixel: float, pixels: int) -> int:
    """The budgeted peak of a pass over ``pixels`` input pixels."""
    return int(per_pixel * pixels * HEADROOM)
