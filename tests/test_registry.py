import dataclasses

import pytest
import torch
from conftest import cpu_info

from aedr.autoencoders import create_autoencoder, devices, get_spec, group_members, list_models
from aedr.autoencoders.registry import architecture_config, dtype_name, resolve_dtype

REQUIRED = {
    "sd15", "sd21", "sd2base", "sdxl", "sdxl-fp16fix", "sd3", "sd35", "flux1", "flux2",
    "pixart-alpha", "pixart-sigma", "playground25", "kandinsky21", "kandinsky22", "vq-diffusion",
    "sana", "qwen-image", "taesd", "taesdxl", "taesd3", "taef1", "taef2",
}  # fmt: skip


def test_registry_covers_the_families_with_their_facts():
    specs = {spec.name: spec for spec in list_models()}
    assert set(specs) >= REQUIRED
    assert specs["sd35"].gated and specs["sd35"].latent_channels == 16
    assert specs["flux1"].hub_id == "black-forest-labs/FLUX.1-schnell" and not specs["flux1"].gated
    assert specs["sana"].spatial_factor == 32 and specs["sana"].size_multiple == 32
    assert specs["qwen-image"].size_multiple == 16 and specs["kandinsky22"].size_multiple == 64
    assert specs["sdxl"].default_dtype("cuda") == "fp32"  # overflows in fp16
    assert all(spec.default_dtype("cpu") == "fp32" for spec in specs.values())
    assert get_spec("SD1.5") is specs["sd15"] and get_spec("flux1-dev") is specs["flux1"]
    for spec in specs.values():
        assert spec.license, f"{spec.name} has no license note"
        assert spec.weight_prefix or spec.hub_id, spec.name


def test_architecture_configs_agree_with_registry_facts():
    for spec in list_models():
        if spec.architecture is None:
            continue
        config = architecture_config(spec.architecture)
        assert config["_class_name"] == spec.diffusers_class, spec.name
        channels = config.get("vq_embed_dim") or config.get("latent_channels") or config["z_dim"]
        assert channels == spec.latent_channels, spec.name


def test_equivalence_groups_name_models_with_the_same_weights():
    assert group_members("sd2") == ["sd21", "sd2base"]
    assert group_members("sd3") == ["sd3", "sd35"]
    assert "pixart-sigma" in group_members("sdxl")
    assert group_members("sdxl-fp16fix") == ["sdxl-fp16fix"]  # fine-tuned: different weights
    assert create_autoencoder("sd2base", random_weights=True).group == "sd2"


def test_dtype_resolution():
    sdxl, flux = get_spec("sdxl"), get_spec("flux1")
    assert resolve_dtype("auto", flux, "cpu") == torch.float32
    assert resolve_dtype("auto", flux, "cuda:0") == torch.bfloat16
    assert resolve_dtype(None, sdxl, "cuda") == torch.float32
    assert resolve_dtype("auto", None, "cuda") == torch.float32  # unknown family: safe choice
    assert resolve_dtype("fp16", sdxl, "cpu") == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", sdxl, "cpu")


def test_dtype_auto_is_bf16_only_where_the_cpu_computes_it_and_it_was_measured(
    monkeypatch, tmp_path
):
    measured = dataclasses.replace(get_spec("taesd"), cpu_bf16=True)
    unmeasured = dataclasses.replace(measured, cpu_bf16=False)
    monkeypatch.delenv(devices.NATIVE_BF16_ENV)
    for flags, expected in (("avx2 avx512f avx512_vnni", "fp32"), ("avx512f avx512_bf16", "bf16"),
                            ("amx_bf16 amx_tile", "bf16"), (None, "fp32")):  # fmt: skip
        # None: no /proc/cpuinfo (another system)
        info = tmp_path / "absent" if flags is None else cpu_info(tmp_path, flags)
        monkeypatch.setattr(devices, "CPU_INFO", info)
        assert dtype_name("auto", measured, "cpu") == expected, flags
        assert dtype_name(None, measured, "cpu") == expected
        assert dtype_name("auto", unmeasured, "cpu") == "fp32"
        assert dtype_name("auto", None, "cpu") == "fp32"  # a model outside the registry
        assert dtype_name("auto", measured, "cuda") == measured.gpu_dtype
        assert dtype_name("fp32", measured, "cpu") == "fp32"  # stated: as stated
        assert dtype_name("paper", measured, "cpu") == "fp32"
