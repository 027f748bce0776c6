"""aedr: which latent diffusion model made this image? Training-free attribution by AutoEncoder
Double-Reconstruction (AEDR, arXiv 2507.18988).

The package is laid out the way it works:

- ``aedr.autoencoders``: the model zoo, from a name to a loaded encoder/decoder;
- ``aedr.measure``: images in, measurements out (losses, homogeneity, provenance, the store);
  nothing there decides anything;
- ``aedr.decide``: statistics of measurements, thresholds, verdicts, evaluation;
- ``aedr.workflows``: the jobs (calibrate, evaluate, localize) the CLI, the server and the demo
  call;
- ``aedr.tensors``: the same for tensors already in memory.

Importing ``aedr`` is cheap: torch and diffusers load only when an autoencoder is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.19.0"

if TYPE_CHECKING:  # real imports for type checkers and IDEs; at run time they load lazily
    from aedr.attributor import Attributor
    from aedr.autoencoders import (
        Autoencoder,
        ModelHandle,
        ModelSpec,
        ModelUnavailableError,
        create_autoencoder,
        list_models,
        resolve_model,
    )
    from aedr.decide.attribution import Attribution, attribute
    from aedr.decide.calibration import Calibration, CalibrationError, calibrate, kde_threshold
    from aedr.decide.evaluation import evaluate
    from aedr.decide.report import write_report
    from aedr.decide.statistics import DEFAULT_STATISTIC, Statistic, get_statistic
    from aedr.measure.homogeneity import glcm_homogeneity, homogeneity_of_file
    from aedr.measure.images import ImageError, read_image
    from aedr.measure.inversion import latenttracer_losses
    from aedr.measure.provenance import Provenance
    from aedr.measure.reconstruction import reconstruction_measures
    from aedr.measure.record import Measurement
    from aedr.measure.scorer import Scorer, score_array
    from aedr.measure.settings import ScoreSettings
    from aedr.measure.store import ScoreStore
    from aedr.tensors import AEDR, BatchSignals
    from aedr.workflows import (
        Localization,
        calibrate_generator_free,
        calibrate_images,
        calibrate_measurements,
        evaluate_files,
        localize_images,
    )

_EXPORTS = {
    "Autoencoder": "aedr.autoencoders",
    "ModelHandle": "aedr.autoencoders",
    "ModelSpec": "aedr.autoencoders",
    "ModelUnavailableError": "aedr.autoencoders",
    "create_autoencoder": "aedr.autoencoders",
    "resolve_model": "aedr.autoencoders",
    "list_models": "aedr.autoencoders",
    "glcm_homogeneity": "aedr.measure.homogeneity",
    "homogeneity_of_file": "aedr.measure.homogeneity",
    "read_image": "aedr.measure.images",
    "ImageError": "aedr.measure.images",
    "reconstruction_measures": "aedr.measure.reconstruction",
    "latenttracer_losses": "aedr.measure.inversion",
    "Provenance": "aedr.measure.provenance",
    "Scorer": "aedr.measure.scorer",
    "Measurement": "aedr.measure.record",
    "ScoreSettings": "aedr.measure.settings",
    "score_array": "aedr.measure.scorer",
    "ScoreStore": "aedr.measure.store",
    "Statistic": "aedr.decide.statistics",
    "DEFAULT_STATISTIC": "aedr.decide.statistics",
    "get_statistic": "aedr.decide.statistics",
    "Calibration": "aedr.decide.calibration",
    "CalibrationError": "aedr.decide.calibration",
    "calibrate": "aedr.decide.calibration",
    "kde_threshold": "aedr.decide.calibration",
    "Attribution": "aedr.decide.attribution",
    "Attributor": "aedr.attributor",
    "attribute": "aedr.decide.attribution",
    "evaluate": "aedr.decide.evaluation",
    "write_report": "aedr.decide.report",
    "calibrate_images": "aedr.workflows",
    "calibrate_generator_free": "aedr.workflows",
    "calibrate_measurements": "aedr.workflows",
    "evaluate_files": "aedr.workflows",
    "localize_images": "aedr.workflows",
    "Localization": "aedr.workflows",
    "AEDR": "aedr.tensors",
    "BatchSignals": "aedr.tensors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aedr' has no attribute {name!r}")
