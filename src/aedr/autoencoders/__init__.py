"""Autoencoder adapters and the model registry."""

from aedr.autoencoders.base import Autoencoder, LatentMode, ModelUnavailableError
from aedr.autoencoders.loading import ModelHandle, create_autoencoder, resolve_model
from aedr.autoencoders.registry import (
    ModelSpec,
    find_local_weights,
    get_spec,
    group_members,
    list_models,
)

__all__ = [
    "Autoencoder",
    "LatentMode",
    "ModelHandle",
    "ModelSpec",
    "ModelUnavailableError",
    "create_autoencoder",
    "find_local_weights",
    "get_spec",
    "group_members",
    "list_models",
    "resolve_model",
]
