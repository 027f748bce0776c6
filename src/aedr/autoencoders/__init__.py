"""Autoencoder adapters and the model registry."""

from aedr.autoencoders.base import Autoencoder, LatentMode, ModelUnavailableError
from aedr.autoencoders.registry import (
    ModelSpec,
    create_autoencoder,
    find_local_weights,
    get_spec,
    list_models,
)

__all__ = [
    "Autoencoder",
    "LatentMode",
    "ModelSpec",
    "ModelUnavailableError",
    "create_autoencoder",
    "find_local_weights",
    "get_spec",
    "list_models",
]
