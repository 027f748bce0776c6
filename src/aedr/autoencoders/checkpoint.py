"""Single-file autoencoder checkpoints: fine-tuned VAEs as one ``.safetensors`` (or pickle) file.

Both key layouts in circulation are read: diffusers' (``encoder.down_blocks.0.resnets.0...``) and
the original LDM/A1111 one (``encoder.down.0.block.0...``, converted with diffusers' own mapping).
A whole-pipeline checkpoint also works: only its ``first_stage_model.``/``vae.`` tensors are kept.
The model class and config come from a JSON file beside the checkpoint (``<stem>.json`` or
``config.json``) when there is one; otherwise an ``AutoencoderKL`` config is inferred from the
tensor shapes, which covers the 4- and 16-channel KL VAEs that fine-tunes are made of.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aedr.autoencoders.base import ModelUnavailableError
from aedr.autoencoders.weights import load_state_dict

if TYPE_CHECKING:
    import torch

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

VAE_PREFIXES = ("first_stage_model.", "vae.")
_VAE_MODULES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.", "bn.")


def _is_vae_key(key: str) -> bool:
    return key.startswith(VAE_PREFIXES) or key.startswith(_VAE_MODULES)


def vae_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The autoencoder's tensors from ``path``, with any pipeline prefix removed."""
    state = load_state_dict(path, keep=_is_vae_key)
    for prefix in VAE_PREFIXES:
        if any(key.startswith(prefix) for key in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    if not any(key.startswith("decoder.") for key in state):
        raise ModelUnavailableError(
            f"{path} holds no autoencoder weights (no encoder./decoder. tensors, "
            f"with or without a {' / '.join(VAE_PREFIXES)} prefix)"
        )
    return state


def is_ldm_layout(state: dict[str, Any]) -> bool:
    return any(key.startswith("encoder.down.") for key in state)


def infer_kl_config(state: dict[str, Any]) -> dict[str, Any]:
    """An ``AutoencoderKL`` config that fits the tensor shapes of ``state`` (either layout)."""
    ldm = is_ldm_layout(state)
    block, resnet = ("down", "block") if ldm else ("down_blocks", "resnets")
    pattern = re.compile(rf"encoder\.{block}\.(\d+)\.{resnet}\.(\d+)\.conv1\.weight")
    layers: dict[int, int] = {}
    for key in state:
        if match := pattern.fullmatch(key):
            index, layer = int(match[1]), int(match[2])
            layers[index] = max(layers.get(index, 0), layer + 1)
    if not layers:
        raise ModelUnavailableError("cannot infer the autoencoder's shape: no encoder blocks found")
    count = max(layers) + 1
    channels = [
        int(state[f"encoder.{block}.{i}.{resnet}.0.conv1.weight"].shape[0]) for i in range(count)
    ]
    mid_attention = "encoder.mid.attn_1." if ldm else "encoder.mid_block.attentions.0."
    return {
        "_class_name": "AutoencoderKL",
        "block_out_channels": channels,
        "down_block_types": ["DownEncoderBlock2D"] * count,
        "up_block_types": ["UpDecoderBlock2D"] * count,
        "latent_channels": int(state["decoder.conv_in.weight"].shape[1]),
        "layers_per_block": layers[0],
        "use_quant_conv": "quant_conv.weight" in state,
        "use_post_quant_conv": "post_quant_conv.weight" in state,
        "mid_block_add_attention": any(key.startswith(mid_attention) for key in state),
    }


def config_beside(path: Path) -> Path | None:
    """``<stem>.json`` or ``config.json`` next to a checkpoint file."""
    for candidate in (path.with_suffix(".json"), path.parent / "config.json"):
        if candidate.is_file():
            return candidate
    return None


def load_checkpoint(
    path: Path, name: str, identity: str, **adapter_options
) -> DiffusersAutoencoder:
    """A ``DiffusersAutoencoder`` from a single checkpoint file."""
    import diffusers

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

    state = vae_state_dict(path)
    config_path = config_beside(path)
    config = json.loads(config_path.read_text()) if config_path else infer_kl_config(state)
    class_name = config.get("_class_name", "AutoencoderKL")
    model_class = getattr(diffusers, class_name, None)
    if model_class is None:
        raise ModelUnavailableError(f"diffusers has no model class {class_name!r} ({config_path})")
    if is_ldm_layout(state):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        state = convert_ldm_vae_checkpoint(state, config)
    model = model_class.from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        source = config_path or "the config inferred from its shapes"
        details = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ModelUnavailableError(
            f"{path} does not fit {class_name} ({source}): {details[-1] if details else exc}"
        ) from exc
    return DiffusersAutoencoder(name, model.float(), identity, **adapter_options)
