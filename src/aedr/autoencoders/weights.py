"""Reading weight files safely: safetensors first, pickles only through ``weights_only``.

A ``.pth``/``.ckpt``/``.bin`` file is a pickle, and unpickling runs code; ``torch.load`` with
``weights_only=True`` accepts tensors and plain containers only and refuses anything else.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aedr.autoencoders.base import ModelUnavailableError

if TYPE_CHECKING:
    import torch

WEIGHT_SUFFIXES = (".safetensors", ".pth")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def load_state_dict(
    path: Path, keep: Callable[[str], bool] | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a weight file (only the keys ``keep`` accepts), never unpickling objects.

    With safetensors, unwanted tensors are never read, so a whole-pipeline checkpoint costs only
    its autoencoder's memory.
    """
    keep = keep or (lambda key: True)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys() if keep(key)}  # noqa: SIM118
        import torch

        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]  # Lightning / original LDM checkpoints
        if not isinstance(loaded, dict):
            raise ValueError(f"holds a {type(loaded).__name__}, not a state dict")
        return {key: value for key, value in loaded.items() if keep(key)}
    except Exception as exc:  # any failure here means the file is unusable; say which and why
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelUnavailableError(f"cannot read weights {path}: {reason}") from exc


def find_weight_pair(directory: Path, prefix: str) -> tuple[Path, Path] | None:
    """``<prefix>_encoder`` and ``<prefix>_decoder`` in ``directory``, safetensors preferred."""
    for suffix in WEIGHT_SUFFIXES:
        encoder = directory / f"{prefix}_encoder{suffix}"
        decoder = directory / f"{prefix}_decoder{suffix}"
        if encoder.is_file() and decoder.is_file():
            return encoder, decoder
    return None


def files_sha256(paths: list[Path]) -> str:
    """One digest over the files' bytes, streamed (VAE checkpoints can be gigabytes).

    Remembered per (path, size, modification time): resolving a model's identity and then loading
    it hash the same files once, not twice.
    """
    stamps = []
    for path in paths:
        status = os.stat(path)
        stamps.append((str(Path(path).resolve()), status.st_size, status.st_mtime_ns))
    return _files_sha256(tuple(stamps))


@functools.lru_cache(maxsize=64)
def _files_sha256(stamps: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in stamps:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
