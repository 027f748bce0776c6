import pickle

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image

from aedr.autoencoders import (
    ModelUnavailableError,
    create_autoencoder,
    get_spec,
    list_models,
    resolve_model,
)
from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder
from aedr.autoencoders.tiny import TinyAutoencoder
from aedr.measure.images import aligned_crop, read_image, to_model_input
from aedr.measure.reconstruction import reconstruction_measures
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings

TINY_MODELS = ("taesd", "taesdxl", "taesd3", "taef1", "taef2")
ARCHITECTURES: dict[str, str] = {}  # published config -> the first registry entry using it
for _spec in list_models():
    if _spec.architecture:
        ARCHITECTURES.setdefault(_spec.architecture, _spec.name)
FAMILIES = list(ARCHITECTURES.values())  # one build per architecture: the suite's slowest test


def random_kl() -> DiffusersAutoencoder:
    return create_autoencoder("sd15", random_weights=True)


def test_kl_adapter_mode_is_deterministic_and_sample_is_seeded():
    autoencoder = random_kl()
    assert (autoencoder.latent_channels, autoencoder.spatial_factor) == (4, 8)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        mode = autoencoder.encode(x)
        assert mode.shape == (2, 4, 4, 6)
        torch.testing.assert_close(autoencoder.encode(x), mode)
        first = autoencoder.encode(x, "sample", torch.Generator().manual_seed(3))
        again = autoencoder.encode(x, "sample", torch.Generator().manual_seed(3))
        torch.testing.assert_close(first, again)
        assert not torch.allclose(first, mode)
        assert autoencoder.decode(mode).shape == x.shape


@pytest.mark.parametrize("name", [spec.name for spec in list_models() if spec.architecture])
def test_every_registry_entry_carries_its_facts_to_the_model(name):
    """Entries sharing an architecture (built once, below) differ in the facts they pass on."""
    spec = get_spec(name)
    handle = resolve_model(name, random_weights=True)
    assert handle.size_multiple == spec.size_multiple and handle.group == spec.equivalence_group
    assert spec.architecture in ARCHITECTURES


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_runs_from_its_published_config(name, tmp_path):
    """Random weights in the published architecture: shapes, ranges, size multiple, signal."""
    spec = get_spec(name)
    autoencoder = create_autoencoder(name, random_weights=True)
    assert isinstance(autoencoder, DiffusersAutoencoder)
    assert autoencoder.latent_channels == spec.latent_channels
    assert autoencoder.spatial_factor == spec.spatial_factor
    assert autoencoder.size_multiple == spec.size_multiple
    assert autoencoder.group == spec.equivalence_group
    assert autoencoder.dtype == torch.float32  # CPU default
    side = max(64, spec.size_multiple)
    x = torch.rand(1, 3, side, side) * 2 - 1
    with torch.no_grad():
        latents = autoencoder.encode(x)
        factor = spec.spatial_factor
        assert latents.shape[:2] == (1, spec.latent_channels)  # Qwen-Image adds a frame axis
        assert latents.shape[-2:] == (side // factor, side // factor)
        decoded = autoencoder.decode(latents)
    assert decoded.shape == x.shape and torch.isfinite(decoded).all()
    assert decoded.abs().max() < 50  # images, not exploded activations

    # An image off the size grid is cropped onto it, and the AEDR signal is finite (the grid
    # phase search, 16 reconstructions, is tested on real decoders in test_degradation).
    odd = Image.fromarray(smooth_image(1, (side + 5, side + 3)))
    odd.save(tmp_path / "odd.png")
    (record,) = Scorer([autoencoder], ScoreSettings(robust="off")).score_file(tmp_path / "odd.png")
    assert record.ok, record.error
    assert record.ok and np.isfinite(record.ratio) and record.ratio > 0
    assert record.group == spec.equivalence_group


@pytest.mark.parametrize("name", ["sd15", "flux1"])
def test_half_precision_runs_and_losses_stay_float64(name):
    autoencoder = create_autoencoder(name, dtype="bf16", random_weights=True)
    assert autoencoder.dtype == torch.bfloat16
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    loss1 = reconstruction_measures(autoencoder, x).loss1
    assert loss1.dtype == torch.float64 and torch.isfinite(loss1).all()
    reference = reconstruction_measures(create_autoencoder(name, random_weights=True), x)
    assert abs(float(loss1[0] / reference.loss1[0]) - 1) < 0.05  # bf16 moves the loss, not much


class OverflowingInHalf(TinyAutoencoder):
    """Decodes to infinity unless it runs in float32, like the SDXL VAE in fp16."""

    def decode(self, latents):
        decoded = super().decode(latents)
        return decoded if self.dtype == torch.float32 else decoded * float("inf")


def test_non_finite_half_precision_output_is_recomputed_in_float32():
    # float32 arithmetic on the same (bf16-rounded) weights
    reference = TinyAutoencoder.random("t", 4).to(dtype=torch.bfloat16).to(dtype=torch.float32)
    overflowing = OverflowingInHalf.random("t", 4).to(dtype=torch.bfloat16)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    measured = reconstruction_measures(overflowing, x)
    loss1, loss2 = measured.loss1, measured.loss2
    assert torch.isfinite(loss1).all() and torch.isfinite(loss2).all()
    assert overflowing.dtype == torch.bfloat16  # restored after the fallback
    expected = reconstruction_measures(reference, x)
    torch.testing.assert_close(loss1, expected.loss1)


def test_vq_quantize_option_changes_decoding_and_identity():
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    continuous = create_autoencoder("kandinsky22", random_weights=True)
    quantized = create_autoencoder("kandinsky22", random_weights=True, quantize=True)
    assert continuous.quantize is False and quantized.quantize is True
    assert continuous.identity != quantized.identity
    with torch.no_grad():
        latents = continuous.encode(x)
        assert not torch.allclose(continuous.decode(latents), quantized.decode(latents))


def test_weights_pickle_that_runs_code_is_refused(tmp_path, random_tiny):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save(random_tiny.module["decoder"].state_dict(), tmp_path / "evil_decoder.pth")
    (tmp_path / "evil_encoder.pth").write_bytes(pickle.dumps({"0.weight": Exploit()}))
    with pytest.raises(ModelUnavailableError, match="cannot read weights"):
        create_autoencoder(str(tmp_path / "evil_encoder.pth"))


def kodak_crop(shared_dir, size=256) -> torch.Tensor:
    image = read_image(shared_dir / "images" / "real" / "kodak" / "kodim05.png")
    return torch.from_numpy(to_model_input(aligned_crop(image.rgb, 8)[:size, :size]))[None]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_shared_tiny_autoencoders_reconstruct_photos(name, tae_dir, shared_dir, record_property):
    autoencoder = create_autoencoder(name, weights_dir=tae_dir)
    assert isinstance(autoencoder, TinyAutoencoder)
    assert autoencoder.latent_channels == get_spec(name).latent_channels
    x = kodak_crop(shared_dir)
    with torch.no_grad():
        x1 = autoencoder.decode(autoencoder.encode(x))
    psnr = 10 * np.log10(4.0 / torch.mean((x - x1) ** 2).item())
    record_property(f"{name}_psnr_db", round(psnr, 2))
    assert psnr > 18.0, f"{name}: PSNR {psnr:.2f} dB is not what trained weights give"


def test_pth_and_safetensors_give_identical_models(tae_dir, tmp_path, shared_dir):
    from safetensors.torch import load_file

    for part in ("encoder", "decoder"):
        torch.save(load_file(tae_dir / f"taesd_{part}.safetensors"), tmp_path / f"taesd_{part}.pth")
    from_pth = create_autoencoder(str(tmp_path / "taesd_encoder.pth"))
    from_safetensors = create_autoencoder("taesd", weights_dir=tae_dir)
    x = kodak_crop(shared_dir, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            from_pth.decode(from_pth.encode(x)), from_safetensors.decode(from_safetensors.encode(x))
        )
    assert from_pth.identity != from_safetensors.identity  # different files, different hashes


def test_tiny_files_match_diffusers_autoencoder_tiny(tae_dir, shared_dir):
    """Our layout of the ComfyUI files computes what diffusers' AutoencoderTiny computes."""
    from diffusers import AutoencoderTiny

    ours = create_autoencoder("taesd", weights_dir=tae_dir)
    state = {}
    for key, value in ours.module["encoder"].state_dict().items():
        state[f"encoder.layers.{key}"] = value
    for key, value in ours.module["decoder"].state_dict().items():
        index, rest = key.split(".", 1)
        state[f"decoder.layers.{int(index) - 1}.{rest}"] = value  # no clamp layer in diffusers
    reference = AutoencoderTiny()
    reference.load_state_dict(state)
    theirs = DiffusersAutoencoder("taesd-diffusers", reference.eval(), "test")
    x = kodak_crop(shared_dir, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), ours.encode(x), rtol=1e-4, atol=1e-4)
        z = ours.encode(x)
        torch.testing.assert_close(theirs.decode(z), ours.decode(z), rtol=1e-4, atol=1e-4)
