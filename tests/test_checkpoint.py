"""Single-file VAE checkpoints: diffusers and original LDM key layouts, with or without config."""

import re

import pytest
import torch
from safetensors.torch import save_file

from aedr.autoencoders import ModelUnavailableError, create_autoencoder
from aedr.autoencoders.checkpoint import infer_kl_config


def ldm_layout(state: dict[str, torch.Tensor], blocks: int = 4) -> dict[str, torch.Tensor]:
    """Rename a diffusers AutoencoderKL state dict to the original LDM layout (test fixture)."""
    renamed = {}
    for key, value in state.items():
        new = key
        new = re.sub(r"down_blocks\.(\d)\.resnets", r"down.\1.block", new)
        new = re.sub(r"down_blocks\.(\d)\.downsamplers\.0", r"down.\1.downsample", new)
        new = re.sub(
            r"up_blocks\.(\d)\.resnets", lambda m: f"up.{blocks - 1 - int(m[1])}.block", new
        )
        new = re.sub(
            r"up_blocks\.(\d)\.upsamplers\.0",
            lambda m: f"up.{blocks - 1 - int(m[1])}.upsample",
            new,
        )
        new = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m[1]) + 1}", new)
        new = new.replace("mid_block.attentions.0", "mid.attn_1")
        for old, ldm in (
            ("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
            ("to_out.0", "proj_out"), ("conv_shortcut", "nin_shortcut"),
            ("conv_norm_out", "norm_out"),
        ):  # fmt: skip
            new = new.replace(f".{old}.", f".{ldm}.")
        if ".attn_1." in new and new.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM attention projections are 1x1 convolutions
        renamed[new] = value.contiguous()
    return renamed


@pytest.fixture(scope="module")
def kl():
    return create_autoencoder("sd3", random_weights=True)  # 16 channels, no quant convs


def same_outputs(a, b) -> None:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(a.decode(a.encode(x)), b.decode(b.encode(x)))


def test_diffusers_layout_file_with_inferred_config(kl, tmp_path):
    path = tmp_path / "my-vae.safetensors"
    save_file(kl.module.state_dict(), path)
    loaded = create_autoencoder(str(path))
    assert loaded.identity.startswith("sha256:") and loaded.latent_channels == 16
    assert not loaded.module.config.use_quant_conv
    same_outputs(kl, loaded)


def test_ldm_layout_file_inside_a_whole_pipeline_checkpoint(tmp_path):
    sd = create_autoencoder("sd15", random_weights=True)
    state = {f"first_stage_model.{k}": v for k, v in ldm_layout(sd.module.state_dict()).items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4)  # UNet: ignored
    path = tmp_path / "sd-finetune.safetensors"
    save_file(state, path)
    loaded = create_autoencoder(str(path))
    assert loaded.latent_channels == 4 and loaded.module.config.use_quant_conv
    same_outputs(sd, loaded)


def test_pickle_checkpoint_with_state_dict_key(kl, tmp_path):
    path = tmp_path / "vae.ckpt"
    torch.save({"state_dict": kl.module.state_dict()}, path)
    same_outputs(kl, create_autoencoder(str(path)))


def test_config_beside_the_file_gives_the_class(tmp_path):
    from diffusers import VQModel

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

    small = VQModel(block_out_channels=(32, 64), norm_num_groups=8, latent_channels=4,
                    down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2)  # fmt: skip
    save_file(small.state_dict(), tmp_path / "vq.safetensors")
    small.save_config(tmp_path)  # config.json beside the file
    loaded = create_autoencoder(str(tmp_path / "vq.safetensors"))
    assert type(loaded.module).__name__ == "VQModel" and loaded.spatial_factor == 2
    same_outputs(DiffusersAutoencoder("vq", small, "x", quantize=True), loaded)


def test_files_that_are_not_autoencoders_are_refused(kl, tmp_path):
    save_file({"model.diffusion_model.x": torch.zeros(2)}, tmp_path / "unet.safetensors")
    with pytest.raises(ModelUnavailableError, match="holds no autoencoder weights"):
        create_autoencoder(str(tmp_path / "unet.safetensors"))
    state = kl.module.state_dict()
    state.pop("decoder.conv_out.bias")
    save_file(state, tmp_path / "broken.safetensors")
    with pytest.raises(ModelUnavailableError, match="does not fit AutoencoderKL"):
        create_autoencoder(str(tmp_path / "broken.safetensors"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelUnavailableError, match="neither a checkpoint"):
        create_autoencoder(str(tmp_path / "notes.txt"))


def test_inferred_config_reads_block_layout():
    sd = create_autoencoder("sd15", random_weights=True).module.state_dict()
    for state in (sd, ldm_layout(sd)):
        config = infer_kl_config(state)
        assert config["block_out_channels"] == [128, 256, 512, 512]
        assert config["layers_per_block"] == 2 and config["latent_channels"] == 4
        assert config["mid_block_add_attention"]
