import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from aedr.autoencoders import ModelUnavailableError, create_autoencoder, get_spec, list_models
from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder
from aedr.autoencoders.tiny import TinyAutoencoder
from aedr.images import aligned_crop, read_image, to_model_input

FIXTURES = Path(__file__).parent / "fixtures"
TINY_MODELS = ("taesd", "taesdxl", "taesd3", "taef1", "taef2")
REQUIRED = {"taesd", "taesdxl", "taesd3", "taef1", "taef2", "sd15", "sd21", "sdxl", "sd35", "flux1"}


def random_kl() -> DiffusersAutoencoder:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    config = json.loads((FIXTURES / "sd_vae_config.json").read_text())
    model = AutoencoderKL.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    return DiffusersAutoencoder("sd-random", model, "random:0")


def test_registry_lists_required_models_with_facts():
    specs = {spec.name: spec for spec in list_models()}
    assert set(specs) >= REQUIRED
    assert specs["sd35"].gated and specs["sd35"].latent_channels == 16
    assert specs["flux1"].hub_id == "black-forest-labs/FLUX.1-schnell"
    assert specs["sd15"].subfolder == "vae"
    assert get_spec("SD1.5") is specs["sd15"]


def test_unknown_model_and_weight_file_only_model_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("AEDR_WEIGHTS_DIR", raising=False)
    with pytest.raises(ModelUnavailableError, match="unknown model 'nonsense'"):
        create_autoencoder("nonsense")
    with pytest.raises(ModelUnavailableError, match=r"taef2.*--weights-dir"):
        create_autoencoder("taef2", weights_dir=tmp_path)


def test_kl_adapter_from_published_config_random_weights():
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


def test_local_diffusers_folder_is_found_before_the_hub(tmp_path):
    random_kl().module.save_pretrained(tmp_path / "sd15")
    autoencoder = create_autoencoder("sd15", weights_dir=tmp_path)
    assert isinstance(autoencoder, DiffusersAutoencoder)
    assert autoencoder.name == "sd15" and autoencoder.identity.startswith("path:")
    by_path = create_autoencoder(str(tmp_path / "sd15"))
    assert by_path.latent_channels == 4


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
