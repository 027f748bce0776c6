"""The model registry: one line per model, with ``list_models`` / ``get_spec`` to read it.

Models are loaded by ``aedr.autoencoders.loading.create_autoencoder``, which also accepts hub ids
and local paths. Local weights folders (``weights_dir`` and ``$AEDR_WEIGHTS_DIR``) are searched
before the hub.

Equivalence groups: models that ship the very same autoencoder weights give identical AEDR scores,
so AEDR cannot tell them apart; results name the group. Groups are declared from the model cards
(same VAE published for several models); weights that merely share an architecture are not grouped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aedr.autoencoders.devices import native_bf16
from aedr.autoencoders.weights import WEIGHT_SUFFIXES, find_weight_pair

if TYPE_CHECKING:
    import torch

WEIGHTS_DIR_ENV = "AEDR_WEIGHTS_DIR"
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class ModelSpec:
    """What AEDR needs to know to fetch and run one model's autoencoder.

    ``gpu_dtype`` is the default on accelerators: fp16/bf16 where the family is numerically
    stable, fp32 where it is not (the SDXL VAE overflows in fp16). ``cpu_bf16``: the default on a
    CPU with native bf16 is bf16 (fp32 on other CPUs); set only where ``benchmarks/dtypes.py``
    measured bf16 to flip at most 1% of the model's decisions, which no model met so far
    (docs/performance.md#precision).
    ``architecture`` names the published config in ``configs/`` (random-weight builds, tests).
    ``quantize`` is the default for VQ models: decode through the codebook or not. It is off for
    every VQ family: snapping both passes to the codebook often makes x2 == x1 exactly (loss2 = 0,
    no ratio), and generated images lie on the continuous decoder's manifold anyway. ``on``
    reproduces the authors' script, which lets diffusers quantise.
    ``paper_dtype`` is the precision of the authors' script for the family (``--dtype paper``):
    fp32 but for FLUX.1 and SD 3.5, which they ran in bf16. ``paper_size`` is the square side their
    script forces inputs to (Kandinsky 2.1: 512); ``native_size`` the side LatentTracer resizes
    its inputs to (the family's generation size).
    """

    name: str
    description: str
    diffusers_class: str
    hub_id: str | None
    subfolder: str | None
    latent_channels: int
    spatial_factor: int = 8
    size_multiple: int = 8
    gpu_dtype: str = "fp16"
    cpu_bf16: bool = False
    group: str = ""
    license: str = ""
    architecture: str | None = None
    quantize: bool | None = None
    weight_prefix: str | None = None  # tiny autoencoders: <prefix>_encoder/_decoder files
    aliases: tuple[str, ...] = ()
    gated: bool = False
    paper_dtype: str = "fp32"
    paper_size: int | None = None
    native_size: int = 512

    @property
    def equivalence_group(self) -> str:
        return self.group or self.name

    @property
    def source(self) -> str:
        if self.hub_id is None:
            return f"{self.weight_prefix}_{{encoder,decoder}}{{{','.join(WEIGHT_SUFFIXES)}}}"
        return self.hub_id + (f":{self.subfolder}" if self.subfolder else "")

    def default_dtype(self, device: str | torch.device = "cpu") -> str:
        """``--dtype auto``'s precision on ``device``."""
        if str(device).startswith("cpu"):
            return "bf16" if self.cpu_bf16 and native_bf16() else "fp32"
        return self.gpu_dtype

    def facts(self) -> dict[str, Any]:
        """Everything about the entry, as plain values (for listings and JSON)."""
        values = asdict(self)
        values.update(group=self.equivalence_group, source=self.source, aliases=list(self.aliases))
        return values


_TINY = "tiny AE (TAESD family)"
_KL, _TINY_CLASS, _VQ = "AutoencoderKL", "AutoencoderTiny", "VQModel"
_REGISTRY: tuple[ModelSpec, ...] = (
    ModelSpec("taesd", f"{_TINY}, SD 1.x/2.x latent space", _TINY_CLASS, "madebyollin/taesd", None, 4, license="MIT", weight_prefix="taesd"),
    ModelSpec("taesdxl", f"{_TINY}, SDXL latent space", _TINY_CLASS, "madebyollin/taesdxl", None, 4, license="MIT", weight_prefix="taesdxl"),
    ModelSpec("taesd3", f"{_TINY}, SD 3/3.5 latent space", _TINY_CLASS, "madebyollin/taesd3", None, 16, license="MIT", weight_prefix="taesd3"),
    ModelSpec("taef1", f"{_TINY}, FLUX.1 latent space", _TINY_CLASS, "madebyollin/taef1", None, 16, size_multiple=16, license="MIT", weight_prefix="taef1"),
    ModelSpec("taef2", f"{_TINY}, FLUX.2 latent space (weight files only)", "TinyAutoencoder", None, None, 32, size_multiple=16, license="MIT", weight_prefix="taef2"),
    ModelSpec("sd15", "Stable Diffusion 1.5 (all SD 1.x ship this VAE)", _KL, "stable-diffusion-v1-5/stable-diffusion-v1-5", "vae", 4, group="sd1", license="CreativeML OpenRAIL-M", architecture="kl-f8-c4", aliases=("sd1.5", "sd-1.5", "sd1")),
    ModelSpec("sd21", "Stable Diffusion 2.1", _KL, "stabilityai/stable-diffusion-2-1", "vae", 4, group="sd2", native_size=768, license="CreativeML OpenRAIL++-M", architecture="kl-f8-c4", aliases=("sd2.1", "sd-2.1")),
    ModelSpec("sd2base", "Stable Diffusion 2 base (same VAE as 2.1)", _KL, "stabilityai/stable-diffusion-2-base", "vae", 4, group="sd2", license="CreativeML OpenRAIL++-M", architecture="kl-f8-c4", aliases=("sd2", "sd2-base")),
    ModelSpec("sdxl", "Stable Diffusion XL base 1.0 (fp32 on GPU: overflows in fp16)", _KL, "stabilityai/stable-diffusion-xl-base-1.0", "vae", 4, gpu_dtype="fp32", group="sdxl", license="CreativeML OpenRAIL++-M", architecture="kl-f8-c4", aliases=("sdxl-base",), native_size=1024),
    ModelSpec("sdxl-fp16fix", "SDXL VAE fine-tuned to run in fp16 (different weights)", _KL, "madebyollin/sdxl-vae-fp16-fix", None, 4, license="MIT", architecture="kl-f8-c4", aliases=("sdxl-fp16-fix",)),
    ModelSpec("sd3", "Stable Diffusion 3 Medium (gated repo)", _KL, "stabilityai/stable-diffusion-3-medium-diffusers", "vae", 16, gpu_dtype="bf16", group="sd3", license="Stability AI Community License", architecture="kl-f8-c16", gated=True),
    ModelSpec("sd35", "Stable Diffusion 3.5 Large (gated repo; the SD 3 VAE)", _KL, "stabilityai/stable-diffusion-3.5-large", "vae", 16, gpu_dtype="bf16", group="sd3", license="Stability AI Community License", architecture="kl-f8-c16", aliases=("sd3.5",), gated=True, paper_dtype="bf16", native_size=1024),
    ModelSpec("flux1", "FLUX.1 (schnell repo; dev ships the same VAE)", _KL, "black-forest-labs/FLUX.1-schnell", "vae", 16, size_multiple=16, gpu_dtype="bf16", group="flux1", license="Apache-2.0 (schnell)", architecture="kl-f8-c16", aliases=("flux", "flux.1", "flux1-dev", "flux1-schnell"), paper_dtype="bf16", native_size=1024),
    ModelSpec("flux2", "FLUX.2 dev (gated repo)", "AutoencoderKLFlux2", "black-forest-labs/FLUX.2-dev", "vae", 32, size_multiple=16, gpu_dtype="bf16", license="FLUX.2 [dev] Non-Commercial License", architecture="kl-f8-c32-flux2", aliases=("flux.2",), gated=True),
    ModelSpec("pixart-alpha", "PixArt-alpha XL 1024", _KL, "PixArt-alpha/PixArt-XL-2-1024-MS", "vae", 4, license="CreativeML OpenRAIL++-M", architecture="kl-f8-c4", aliases=("pixart-a",)),
    ModelSpec("pixart-sigma", "PixArt-sigma XL 1024 (ships the SDXL VAE)", _KL, "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", "vae", 4, gpu_dtype="fp32", group="sdxl", license="CreativeML OpenRAIL++-M", architecture="kl-f8-c4", aliases=("pixart-s",)),
    ModelSpec("playground25", "Playground v2.5 1024 aesthetic (SDXL architecture)", _KL, "playgroundai/playground-v2.5-1024px-aesthetic", "vae", 4, gpu_dtype="fp32", license="Playground v2.5 Community License", architecture="kl-f8-c4", aliases=("playground-v2.5",)),
    ModelSpec("kandinsky21", "Kandinsky 2.1 MoVQ", _VQ, "kandinsky-community/kandinsky-2-1", "movq", 4, size_multiple=64, license="Apache-2.0", architecture="movq-f8", quantize=False, aliases=("kandinsky-2.1",), paper_size=512),
    ModelSpec("kandinsky22", "Kandinsky 2.2 MoVQ", _VQ, "kandinsky-community/kandinsky-2-2-decoder", "movq", 4, size_multiple=64, license="Apache-2.0", architecture="movq-f8", quantize=False, aliases=("kandinsky-2.2", "kandinsky")),
    ModelSpec("vq-diffusion", "VQ-Diffusion ITHQ VQ-VAE", _VQ, "microsoft/vq-diffusion-ithq", "vqvae", 128, gpu_dtype="fp32", license="MIT", architecture="vqgan-f8-ithq", quantize=False, aliases=("vqdiffusion",), native_size=256),
    ModelSpec("sana", "Sana 1600M 1024 (DC-AE f32c32)", "AutoencoderDC", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", "vae", 32, spatial_factor=32, size_multiple=32, gpu_dtype="bf16", group="dc-ae-f32c32-sana", license="NVIDIA license (see model card)", architecture="dc-ae-f32c32-sana", aliases=("dc-ae",)),
    ModelSpec("qwen-image", "Qwen-Image (video-shaped 3-D causal VAE, one frame)", "AutoencoderKLQwenImage", "Qwen/Qwen-Image", "vae", 16, size_multiple=16, gpu_dtype="bf16", license="Apache-2.0", architecture="qwen-image", aliases=("qwenimage", "qwen")),
)  # fmt: skip

_BY_NAME = {alias: spec for spec in _REGISTRY for alias in (spec.name, *spec.aliases)}


def list_models() -> list[ModelSpec]:
    """Every registered model, in registry order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec | None:
    return _BY_NAME.get(name.lower())


def group_members(group: str) -> list[str]:
    """Registry names in an equivalence group (indistinguishable by AEDR)."""
    return [spec.name for spec in _REGISTRY if spec.equivalence_group == group]


def architecture_config(name: str) -> dict[str, Any]:
    """A published diffusers config kept with the package (architecture facts, no weights)."""
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


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


def dtype_name(
    dtype: str | torch.dtype | None, spec: ModelSpec | None, device: str | torch.device
) -> str:
    """The precision a model will run in, as fp32/bf16/fp16, without importing torch.

    ``auto`` (or None): :meth:`ModelSpec.default_dtype` (fp32 for a model outside the registry).
    ``paper``: the authors' precision for the family on every device (fp32 if unknown).
    """
    if dtype in (None, "auto"):
        return spec.default_dtype(device) if spec else "fp32"
    if dtype == "paper":
        return spec.paper_dtype if spec else "fp32"
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}: use auto, paper, {', '.join(DTYPE_NAMES)}")
        return dtype
    by_torch_name = {torch_name: name for name, torch_name in DTYPE_NAMES.items()}
    name = by_torch_name.get(str(dtype).removeprefix("torch."))
    if name is None:
        raise ValueError(f"unsupported dtype {dtype}: use {', '.join(DTYPE_NAMES)}")
    return name


def resolve_dtype(
    dtype: str | torch.dtype | None, spec: ModelSpec | None, device: str | torch.device
) -> torch.dtype:
    """The torch dtype of :func:`dtype_name`."""
    import torch

    return getattr(torch, DTYPE_NAMES[dtype_name(dtype, spec, device)])
