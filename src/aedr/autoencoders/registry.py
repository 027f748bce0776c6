"""The model registry: one line per model, plus ``create_autoencoder`` / ``list_models``.

``create_autoencoder`` accepts a registry name or alias, a Hugging Face hub id with an optional
``:subfolder``, or a local path (a diffusers model folder, or a folder / ``*_encoder`` file of a
tiny autoencoder). Local weights folders (``weights_dir`` and ``$AEDR_WEIGHTS_DIR``) are searched
before the hub. Only the autoencoder is ever downloaded, never a whole pipeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from aedr.autoencoders.base import Autoencoder, ModelUnavailableError
from aedr.autoencoders.tiny import WEIGHT_SUFFIXES, TinyAutoencoder, find_weight_pair

WEIGHTS_DIR_ENV = "AEDR_WEIGHTS_DIR"


@dataclass(frozen=True)
class ModelSpec:
    """What AEDR needs to know to fetch and run one model's autoencoder."""

    name: str
    description: str
    diffusers_class: str
    hub_id: str | None
    subfolder: str | None
    latent_channels: int
    spatial_factor: int = 8
    weight_prefix: str | None = None  # tiny autoencoders: <prefix>_encoder/_decoder files
    aliases: tuple[str, ...] = ()
    gated: bool = False

    @property
    def source(self) -> str:
        if self.hub_id is None:
            return f"{self.weight_prefix}_{{encoder,decoder}}{{{','.join(WEIGHT_SUFFIXES)}}}"
        return self.hub_id + (f":{self.subfolder}" if self.subfolder else "")


_REGISTRY: tuple[ModelSpec, ...] = (
    ModelSpec("taesd", "tiny AE, SD 1.x/2.x latent space", "AutoencoderTiny", "madebyollin/taesd", None, 4, weight_prefix="taesd"),
    ModelSpec("taesdxl", "tiny AE, SDXL latent space", "AutoencoderTiny", "madebyollin/taesdxl", None, 4, weight_prefix="taesdxl"),
    ModelSpec("taesd3", "tiny AE, SD 3/3.5 latent space", "AutoencoderTiny", "madebyollin/taesd3", None, 16, weight_prefix="taesd3"),
    ModelSpec("taef1", "tiny AE, FLUX.1 latent space", "AutoencoderTiny", "madebyollin/taef1", None, 16, weight_prefix="taef1"),
    ModelSpec("taef2", "tiny AE, FLUX.2 latent space (weight files only)", "TinyAutoencoder", None, None, 32, weight_prefix="taef2"),
    ModelSpec("sd15", "Stable Diffusion 1.5 VAE", "AutoencoderKL", "stable-diffusion-v1-5/stable-diffusion-v1-5", "vae", 4, aliases=("sd1.5", "sd-1.5")),
    ModelSpec("sd21", "Stable Diffusion 2.1 VAE", "AutoencoderKL", "stabilityai/stable-diffusion-2-1", "vae", 4, aliases=("sd2.1", "sd-2.1")),
    ModelSpec("sd2base", "Stable Diffusion 2 base VAE", "AutoencoderKL", "stabilityai/stable-diffusion-2-base", "vae", 4, aliases=("sd2",)),
    ModelSpec("sdxl", "Stable Diffusion XL base 1.0 VAE", "AutoencoderKL", "stabilityai/stable-diffusion-xl-base-1.0", "vae", 4, aliases=("sdxl-base",)),
    ModelSpec("sd35", "Stable Diffusion 3.5 Large VAE (gated repo)", "AutoencoderKL", "stabilityai/stable-diffusion-3.5-large", "vae", 16, aliases=("sd3.5",), gated=True),
    ModelSpec("flux1", "FLUX.1 VAE (schnell repo; same weights as dev)", "AutoencoderKL", "black-forest-labs/FLUX.1-schnell", "vae", 16, aliases=("flux", "flux.1")),
)  # fmt: skip

_BY_NAME = {alias: spec for spec in _REGISTRY for alias in (spec.name, *spec.aliases)}


def list_models() -> list[ModelSpec]:
    """Every registered model, in registry order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec | None:
    return _BY_NAME.get(name.lower())


def weights_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Local folders searched before the hub: the explicit one, then ``$AEDR_WEIGHTS_DIR``."""
    candidates = [weights_dir, os.environ.get(WEIGHTS_DIR_ENV)]
    return [Path(c) for c in candidates if c]


def find_local_weights(
    spec: ModelSpec, weights_dir: str | os.PathLike | None = None
) -> Path | None:
    """A local copy of ``spec``'s autoencoder, if one is in a weights folder."""
    for directory in weights_dirs(weights_dir):
        if spec.weight_prefix and find_weight_pair(directory, spec.weight_prefix):
            return directory
        if (directory / spec.name / "config.json").is_file():
            return directory / spec.name
    return None


def create_autoencoder(
    model: str,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Autoencoder:
    """Load the autoencoder that ``model`` names (registry name, hub id[:subfolder] or path)."""
    autoencoder = _load(model, weights_dir)
    try:
        return autoencoder.to(torch.device(device), dtype or torch.float32)
    except (RuntimeError, AssertionError) as exc:  # e.g. a CUDA device on a machine without one
        raise ModelUnavailableError(f"cannot run {model!r} on device {device!r}: {exc}") from exc


def _load(model: str, weights_dir: str | os.PathLike | None) -> Autoencoder:
    spec = get_spec(model)
    if spec is not None:
        local = find_local_weights(spec, weights_dir)
        if local is not None:
            return _load_local(local, spec.name, spec.weight_prefix)
        if spec.hub_id is None:
            searched = ", ".join(str(d) for d in weights_dirs(weights_dir)) or "none given"
            raise ModelUnavailableError(
                f"model {spec.name!r} is only available as weight files ({spec.source}); put them "
                f"in a folder and pass --weights-dir or set ${WEIGHTS_DIR_ENV} (searched: {searched})"
            )
        return _load_hub(spec.hub_id, spec.subfolder, spec.name, spec)
    path = Path(model)
    if path.exists():
        return _load_local(path, model)
    if "/" in model and not model.startswith((".", "/")):
        hub_id, _, subfolder = model.partition(":")
        return _load_hub(hub_id, subfolder or None, model, None)
    known = ", ".join(spec.name for spec in _REGISTRY)
    raise ModelUnavailableError(
        f"unknown model {model!r}: not a registry name ({known}), an existing path, or a hub id "
        "like 'owner/repo[:subfolder]'"
    )


def _load_local(path: Path, name: str, prefix: str | None = None) -> Autoencoder:
    if path.is_file():
        stem = path.name.split("_encoder")[0].split("_decoder")[0]
        pair = find_weight_pair(path.parent, stem)
        if pair is None:
            raise ModelUnavailableError(
                f"{path} is not one of a pair of tiny-autoencoder files "
                f"(<name>_encoder / <name>_decoder with {' or '.join(WEIGHT_SUFFIXES)})"
            )
        return TinyAutoencoder.from_files(name, *pair)
    if (path / "config.json").is_file():
        return _load_diffusers(str(path), None, name, identity=f"path:{path.resolve()}")
    prefixes = (
        [prefix]
        if prefix
        else sorted({f.name.rsplit("_encoder", 1)[0] for f in path.glob("*_encoder.*")})
    )
    pairs = [pair for p in prefixes if (pair := find_weight_pair(path, p))]
    if len(pairs) != 1:
        raise ModelUnavailableError(
            f"{path} holds no diffusers config.json and "
            f"{'several' if pairs else 'no'} tiny-autoencoder weight pairs; name one file instead"
        )
    return TinyAutoencoder.from_files(name, *pairs[0])


def _load_hub(hub_id: str, subfolder: str | None, name: str, spec: ModelSpec | None) -> Autoencoder:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return _load_diffusers(hub_id, subfolder, name, identity=None, spec=spec)
    except GatedRepoError as exc:
        raise ModelUnavailableError(
            f"model {name!r} ({hub_id}) is gated: accept its license on the Hugging Face hub, then "
            "log in with `hf auth login` or set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelUnavailableError(f"no hub repository {hub_id!r} (or it is private)") from exc
    except (OSError, ValueError) as exc:
        where = hub_id + (f" (subfolder {subfolder})" if subfolder else "")
        raise ModelUnavailableError(
            f"cannot load model {name!r} from {where}: it is not in the local Hugging Face cache "
            "and the hub could not be reached or does not hold it. Connect once to download it, "
            f"or put its weights in a folder and pass --weights-dir / set ${WEIGHTS_DIR_ENV}. "
            f"Cause: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def _load_diffusers(
    source: str,
    subfolder: str | None,
    name: str,
    identity: str | None,
    spec: ModelSpec | None = None,
) -> Autoencoder:
    import diffusers

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

    class_name = spec.diffusers_class if spec else _config_class_name(source, subfolder)
    model_class = getattr(diffusers, class_name, None)
    if model_class is None:
        raise ModelUnavailableError(f"diffusers has no model class {class_name!r} for {source}")
    model = model_class.from_pretrained(source, subfolder=subfolder, torch_dtype=torch.float32)
    if identity is None:
        revision = getattr(model.config, "_commit_hash", None) or "unknown-revision"
        identity = f"hub:{source}" + (f"/{subfolder}" if subfolder else "") + f"@{revision}"
    return DiffusersAutoencoder(name, model, identity)


def _config_class_name(source: str, subfolder: str | None) -> str:
    if Path(source).is_dir():
        config_path = Path(source, subfolder or "", "config.json")
    else:
        from huggingface_hub import hf_hub_download

        config_path = Path(hf_hub_download(source, "config.json", subfolder=subfolder))
    return json.loads(config_path.read_text()).get("_class_name", "AutoencoderKL")
