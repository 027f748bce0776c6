"""aedr: which latent diffusion model made this image? Training-free attribution by AutoEncoder
Double-Reconstruction (AEDR, arXiv 2507.18988).

Importing ``aedr`` is cheap: torch and diffusers load only when an autoencoder is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Autoencoder": "aedr.autoencoders",
    "ModelSpec": "aedr.autoencoders",
    "ModelUnavailableError": "aedr.autoencoders",
    "create_autoencoder": "aedr.autoencoders",
    "resolve_model": "aedr.autoencoders",
    "list_models": "aedr.autoencoders",
    "glcm_homogeneity": "aedr.homogeneity",
    "homogeneity_of_file": "aedr.homogeneity",
    "read_image": "aedr.images",
    "ImageError": "aedr.images",
    "reconstruction_losses": "aedr.signal",
    "Scorer": "aedr.scoring",
    "ScoreRecord": "aedr.scoring",
    "ScoreSettings": "aedr.scoring",
    "score_array": "aedr.scoring",
    "Calibration": "aedr.calibration",
    "CalibrationError": "aedr.calibration",
    "fit_calibration": "aedr.calibration",
    "calibrate_records": "aedr.calibration",
    "kde_threshold": "aedr.calibration",
    "Attribution": "aedr.attribution",
    "Attributor": "aedr.attribution",
    "attribute": "aedr.attribution",
    "ScoreStore": "aedr.store",
    "evaluate": "aedr.evaluation",
    "write_report": "aedr.report",
    "latenttracer_losses": "aedr.baselines",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aedr' has no attribute {name!r}")
