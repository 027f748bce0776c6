"""From a model name to a loaded autoencoder, in two steps: locate (cheap) and load (torch).

``resolve_model`` finds where a model's weights are and what its identity will be without loading
them or importing torch: local files are hashed, hub models already in the Hugging Face cache are
named by their snapshot's revision (and then loaded by that revision, without network). A run
whose scores are all in the score store therefore never pays for torch. ``create_autoencoder``
does both steps at once. Only the autoencoder's subfolder is ever downloaded, never a pipeline.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aedr.autoencoders.base import TINY_SIZE_MULTIPLE, Autoencoder, ModelUnavailableError
from aedr.autoencoders.registry import (
    WEIGHTS_DIR_ENV,
    ModelSpec,
    architecture_config,
    dtype_name,
    find_local_weights,
    get_spec,
    list_models,
    resolve_dtype,
    weights_dirs,
)
from aedr.autoencoders.weights import SINGLE_FILE_SUFFIXES, files_sha256, find_weight_pair
from aedr.timing import stage

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Location:
    """Where a model's weights are."""

    kind: str  # "random", "pair", "checkpoint", "folder" or "hub"
    name: str
    path: Path | None = None
    pair: tuple[Path, Path] | None = None
    hub_id: str | None = None
    subfolder: str | None = None
    revision: str | None = None  # hub: the cached snapshot, when there is one

    @property
    def local(self) -> Path:
        """The file or folder of a checkpoint or folder location."""
        if self.path is None:
            raise ValueError(f"a {self.kind} location has no local path")
        return self.path

    @property
    def files(self) -> tuple[Path, Path]:
        """The encoder and decoder files of a pair location."""
        if self.pair is None:
            raise ValueError(f"a {self.kind} location has no file pair")
        return self.pair

    @property
    def repository(self) -> str:
        """The hub id of a hub location."""
        if self.hub_id is None:
            raise ValueError(f"a {self.kind} location has no hub id")
        return self.hub_id


class ModelHandle:
    """A model resolved to its weights and identity, loaded when first needed.

    ``identity`` is None before loading only for a hub model that still has to be downloaded.
    """

    def __init__(
        self,
        location: Location,
        spec: ModelSpec | None,
        options: dict[str, Any],
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = "auto",
        seed: int = 0,
        compile: bool = False,
    ):
        self.location, self.spec, self.options = location, spec, options
        self.device, self.dtype, self.seed, self.compile = device, dtype, seed, compile
        self.name = location.name
        self.group = options.get("group") or self.name
        self._autoencoder: Autoencoder | None = None
        self.identity = weights_identity(location, spec, options, seed)
        # What the passes will run in, known before loading (the score store is consulted first).
        self.dtype_name = dtype_name(dtype, spec, device)
        self.device_kind = str(device).split(":")[0]

    @property
    def loaded(self) -> bool:
        return self._autoencoder is not None

    @property
    def auto_dtype(self) -> bool:
        """Whether the precision was left to ``auto`` (a calibration may then choose it)."""
        return self.dtype in (None, "auto")

    def at_dtype(self, dtype: str) -> ModelHandle:
        """This model at precision ``dtype`` (fp32, bf16, fp16), not loaded yet."""
        if self.loaded:
            raise ValueError(f"{self.name!r} is loaded already: its precision is fixed")
        other = copy.copy(self)
        other.dtype, other.dtype_name = dtype, dtype_name(dtype, self.spec, self.device)
        return other

    @property
    def size_multiple(self) -> int | None:
        """The grid inputs are aligned to, where it is known before loading (None otherwise)."""
        if self._autoencoder is not None:
            return self._autoencoder.size_multiple
        if "size_multiple" in self.options:
            return self.options["size_multiple"]
        return TINY_SIZE_MULTIPLE if self.location.kind == "pair" else None

    def load(self) -> Autoencoder:
        if self._autoencoder is None:
            import torch

            with stage("load"):
                autoencoder = _build(
                    self.location, self.spec, self.options, self.seed, self.identity
                )
            self.identity = autoencoder.identity  # a hub model's revision is known once loaded
            torch_dtype = resolve_dtype(self.dtype, self.spec, self.device)
            try:
                autoencoder.to(torch.device(self.device), torch_dtype)
            except (RuntimeError, AssertionError) as exc:  # e.g. CUDA on a machine without one
                raise ModelUnavailableError(
                    f"cannot run {self.name!r} on device {self.device!r}: {exc}"
                ) from exc
            self._autoencoder = autoencoder.compile() if self.compile else autoencoder
        return self._autoencoder

    def __repr__(self) -> str:
        return f"ModelHandle({self.name!r}, {self.location.kind}, identity={self.identity!r})"


def resolve_model(
    model: str,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = "auto",
    *,
    quantize: bool | None = None,
    random_weights: bool = False,
    seed: int = 0,
    compile: bool = False,
) -> ModelHandle:
    """Find the weights ``model`` names (registry name, hub id[:subfolder] or path), lazily.

    ``quantize`` overrides a VQ family's default; ``random_weights`` builds a registry model's
    published architecture with seeded random weights (no download: tests, speed checks).
    """
    spec = get_spec(model)
    if random_weights:
        if spec is None:
            raise ModelUnavailableError(f"random weights need a registry name, not {model!r}")
        location = Location("random", spec.name)
    else:
        location = _locate(model, spec, weights_dir)
    return ModelHandle(location, spec, _options(spec, quantize), device, dtype, seed, compile)


def create_autoencoder(
    model: str,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = "auto",
    *,
    quantize: bool | None = None,
    random_weights: bool = False,
    seed: int = 0,
    compile: bool = False,
) -> Autoencoder:
    """Load the autoencoder that ``model`` names now: ``resolve_model(...).load()``.

    ``model`` is a registry name or alias (``aedr models``), a hub id ``owner/repo[:subfolder]``
    or a local path (diffusers folder, checkpoint file, tiny-autoencoder weight file).
    """
    return resolve_model(
        model, weights_dir, device, dtype, quantize=quantize, random_weights=random_weights,
        seed=seed, compile=compile,
    ).load()  # fmt: skip


def _options(spec: ModelSpec | None, quantize: bool | None) -> dict[str, Any]:
    """Adapter options a registry entry implies (none for an unregistered model)."""
    if spec is None:
        return {} if quantize is None else {"quantize": quantize}
    options: dict[str, Any] = {"group": spec.equivalence_group, "size_multiple": spec.size_multiple}
    if spec.weight_prefix is None:
        options["quantize"] = spec.quantize if quantize is None else quantize
    return options


# ---------------------------------------------------------------------------------------------
# locating


def _locate(model: str, spec: ModelSpec | None, weights_dir: str | os.PathLike | None) -> Location:
    if spec is not None:
        local = find_local_weights(spec, weights_dir)
        if local is not None:
            return _locate_local(local, spec.name, spec.weight_prefix)
        if spec.hub_id is None:
            searched = ", ".join(str(d) for d in weights_dirs(weights_dir)) or "none given"
            raise ModelUnavailableError(
                f"model {spec.name!r} is only available as weight files ({spec.source}); put them "
                f"in a weights folder (or set ${WEIGHTS_DIR_ENV}; searched: {searched})"
            )
        return _locate_hub(spec.hub_id, spec.subfolder, spec.name)
    path = Path(model)
    if path.exists():
        return _locate_local(path, model)
    if "/" in model and not model.startswith((".", "/")):
        hub_id, _, subfolder = model.partition(":")
        return _locate_hub(hub_id, subfolder or None, model)
    known = ", ".join(spec.name for spec in list_models())
    raise ModelUnavailableError(
        f"unknown model {model!r}: not a registry name ({known}), an existing path, or a hub id "
        "like 'owner/repo[:subfolder]'"
    )


def _locate_local(path: Path, name: str, prefix: str | None = None) -> Location:
    if path.is_file():
        stem = path.name.split("_encoder")[0].split("_decoder")[0]
        pair = find_weight_pair(path.parent, stem) if stem != path.name else None
        if pair is not None:
            return Location("pair", name, pair=pair)
        if path.suffix in SINGLE_FILE_SUFFIXES:
            return Location("checkpoint", name, path=path)
        raise ModelUnavailableError(
            f"{path} is neither a checkpoint ({', '.join(SINGLE_FILE_SUFFIXES)}) nor one of a "
            f"pair of tiny-autoencoder files (<name>_encoder / <name>_decoder)"
        )
    if (path / "config.json").is_file():
        return Location("folder", name, path=path)
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
    return Location("pair", name, pair=pairs[0])


def _cached_config(hub_id: str, subfolder: str | None) -> Path | None:
    """The model's config.json in the local Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    filename = f"{subfolder}/config.json" if subfolder else "config.json"
    cached = try_to_load_from_cache(hub_id, filename)
    return Path(cached) if isinstance(cached, str) else None


def _locate_hub(hub_id: str, subfolder: str | None, name: str) -> Location:
    config = _cached_config(hub_id, subfolder)
    # .../snapshots/<revision>/[<subfolder>/]config.json
    revision = config.parents[1 if subfolder else 0].name if config else None
    return Location("hub", name, hub_id=hub_id, subfolder=subfolder, revision=revision)


def _config_class(location: Location, spec: ModelSpec | None) -> str | None:
    """The diffusers class a location holds, where it is known without loading."""
    if spec is not None and spec.weight_prefix is None:
        return spec.diffusers_class
    if location.kind in ("pair", "random"):
        return "TinyAutoencoder"
    if location.kind == "checkpoint":
        from aedr.autoencoders.checkpoint import config_beside

        config_path = config_beside(location.local)
        if config_path is None:
            return "AutoencoderKL"  # inferred from the tensor shapes
    elif location.kind == "folder":
        config_path = location.local / "config.json"
    else:
        config_path = _cached_config(location.repository, location.subfolder)
        if config_path is None:
            return None
    return _class_name_in(config_path)


def _class_name_in(config_path: Path) -> str:
    """The diffusers class a config.json names (AutoencoderKL when it names none)."""
    return json.loads(config_path.read_text()).get("_class_name", "AutoencoderKL")


def weights_identity(
    location: Location,
    spec: ModelSpec | None,
    options: dict[str, Any],
    seed: int = 0,
    revision: str | None = None,
) -> str | None:
    """The identity of the weights at ``location``: the one place it is built.

    Local files and folders: a SHA-256 of their bytes (so weights swapped in place are another
    identity); hub models: the snapshot's revision (``revision`` once loaded, else the cached one;
    None when it is still to be downloaded); random weights: architecture and seed. A VQ model's
    codebook choice is part of it, since it changes every decoded pixel.
    """
    if location.kind == "pair":
        base = "sha256:" + files_sha256(list(location.files))
    elif location.kind == "random":
        base = f"random:{location.name}:seed{seed}"
    elif location.kind == "checkpoint":
        base = "sha256:" + files_sha256([location.local])
    elif location.kind == "folder":
        weight_files = sorted(p for p in location.local.iterdir() if p.is_file() and not
                              p.name.startswith("."))  # fmt: skip
        base = "sha256:" + files_sha256(weight_files)
    elif (revision or location.revision) is None:
        return None
    else:
        subfolder = f"/{location.subfolder}" if location.subfolder else ""
        base = f"hub:{location.hub_id}{subfolder}@{revision or location.revision}"
    if _config_class(location, spec) == "VQModel":
        base += f";quantize={'off' if options.get('quantize') is False else 'on'}"
    return base


# ---------------------------------------------------------------------------------------------
# loading


def _build(
    location: Location,
    spec: ModelSpec | None,
    options: dict[str, Any],
    seed: int,
    identity: str | None,
) -> Autoencoder:
    from aedr.autoencoders.tiny import TinyAutoencoder

    tiny_options = {k: v for k, v in options.items() if k != "quantize"}
    if location.kind == "hub" or location.kind == "folder":
        return _load_folder_or_hub(location, spec, options, identity)
    if identity is None:
        raise ModelUnavailableError(f"the weights of {location.name!r} have no identity")
    if location.kind == "random":
        if spec is None:
            raise ModelUnavailableError(
                f"random weights need a registry model, not {location.name!r}"
            )
        return _random(spec, seed, identity, options)
    if location.kind == "pair":
        return TinyAutoencoder.from_files(location.name, *location.files, identity, **tiny_options)
    if location.kind == "checkpoint":
        from aedr.autoencoders.checkpoint import load_checkpoint

        return load_checkpoint(location.local, location.name, identity, **options)
    raise ModelUnavailableError(f"unknown weights location {location.kind!r}")


def _load_folder_or_hub(
    location: Location, spec: ModelSpec | None, options: dict[str, Any], identity: str | None
) -> Autoencoder:
    if location.kind == "folder":
        try:
            return _load_diffusers(str(location.path), None, location, identity, None, options)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelUnavailableError(
                f"cannot load the diffusers folder {location.path}: {cause}"
            ) from exc
    return _load_hub(location, spec, options, identity)


def _random(spec: ModelSpec, seed: int, identity: str, options: dict[str, Any]) -> Autoencoder:
    import torch

    from aedr.autoencoders.tiny import TinyAutoencoder

    if spec.weight_prefix is not None:
        tiny_options = {k: v for k, v in options.items() if k != "quantize"}
        return TinyAutoencoder.random(
            spec.name, spec.latent_channels, spec.name == "taef2", seed, identity, **tiny_options
        )
    import diffusers

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

    config = architecture_config(spec.architecture or "")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = getattr(diffusers, config["_class_name"]).from_config(config)
    return DiffusersAutoencoder(spec.name, module, identity, **options)


def _load_hub(
    location: Location, spec: ModelSpec | None, options: dict[str, Any], identity: str | None
) -> Autoencoder:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    hub_id, subfolder, name = location.repository, location.subfolder, location.name
    try:
        return _load_diffusers(hub_id, subfolder, location, identity, spec, options)
    except GatedRepoError as exc:
        raise ModelUnavailableError(
            f"model {name!r} ({hub_id}) is gated: accept its license on the Hugging Face hub "
            f"(https://huggingface.co/{hub_id}), then log in with `hf auth login` or set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelUnavailableError(f"no hub repository {hub_id!r} (or it is private)") from exc
    except (OSError, ValueError) as exc:
        where = hub_id + (f" (subfolder {subfolder})" if subfolder else "")
        gated = " It is a gated repo: after accepting its license, log in (`hf auth login`)."
        raise ModelUnavailableError(
            f"cannot load model {name!r} from {where}: it is not in the local Hugging Face cache "
            "and the hub could not be reached or does not hold it. Connect once to download it, "
            f"or put its weights in a weights folder (or set ${WEIGHTS_DIR_ENV})."
            f"{gated if spec and spec.gated else ''} "
            f"Cause: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def _load_diffusers(
    source: str,
    subfolder: str | None,
    location: Location,
    identity: str | None,
    spec: ModelSpec | None,
    options: dict[str, Any],
) -> Autoencoder:
    """Load with diffusers; a cached hub snapshot is loaded by its revision (no network)."""
    import diffusers
    import torch

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

    class_name = spec.diffusers_class if spec else _config_class_name(source, subfolder)
    model_class = getattr(diffusers, class_name, None)
    if model_class is None:
        raise ModelUnavailableError(f"diffusers has no model class {class_name!r} for {source}")
    with warnings.catch_warnings():  # diffusers passes a deprecated argument to the hub client
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        model = model_class.from_pretrained(
            source,
            subfolder=subfolder,
            revision=location.revision,
            torch_dtype=torch.float32,
            low_cpu_mem_usage=False,
        )
    if identity is None:  # a hub model just downloaded: its revision is known now
        revision = getattr(model.config, "_commit_hash", None) or "unknown-revision"
        identity = weights_identity(location, spec, options, revision=revision)
    if identity is None:
        raise ModelUnavailableError(f"the weights of {location.name!r} have no identity")
    return DiffusersAutoencoder(location.name, model, identity, **options)


def _config_class_name(source: str, subfolder: str | None) -> str:
    if Path(source).is_dir():
        config_path = Path(source, subfolder or "", "config.json")
    else:
        from huggingface_hub import hf_hub_download

        config_path = Path(hf_hub_download(source, "config.json", subfolder=subfolder))
    return _class_name_in(config_path)
