import json
import subprocess
import sys
from unittest.mock import Mock

import pytest

from aedr.autoencoders import ModelUnavailableError, create_autoencoder, resolve_model
from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder


def test_unknown_model_and_weight_file_only_model_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("AEDR_WEIGHTS_DIR", raising=False)
    with pytest.raises(ModelUnavailableError, match="unknown model 'nonsense'"):
        create_autoencoder("nonsense")
    with pytest.raises(ModelUnavailableError, match=r"taef2.*weights folder"):
        create_autoencoder("taef2", weights_dir=tmp_path)
    with pytest.raises(ModelUnavailableError, match="random weights need a registry name"):
        create_autoencoder("owner/repo", random_weights=True)


def test_uncached_hub_model_offline_says_how_to_get_it(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # The hub client reads HF_HUB_OFFLINE once, at import: patch the value, not the environment.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("AEDR_WEIGHTS_DIR", raising=False)
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache") as info:
        create_autoencoder("sd35")
    assert "gated repo" in str(info.value) and "hf auth login" in str(info.value)


def test_gated_repo_error_becomes_a_login_hint(monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    import aedr.autoencoders.loading as loading

    def gated(*args, **kwargs):
        raise GatedRepoError("403 gated", response=Mock(headers={}, status_code=403))

    monkeypatch.setattr(loading, "_load_diffusers", gated)
    monkeypatch.delenv("AEDR_WEIGHTS_DIR", raising=False)
    with pytest.raises(ModelUnavailableError, match=r"is gated: accept its license.*HF_TOKEN"):
        create_autoencoder("flux2")


def test_local_diffusers_folder_is_found_before_the_hub(tmp_path):
    create_autoencoder("sd15", random_weights=True).module.save_pretrained(tmp_path / "sd15")
    autoencoder = create_autoencoder("sd15", weights_dir=tmp_path)
    assert isinstance(autoencoder, DiffusersAutoencoder)
    assert autoencoder.name == "sd15" and autoencoder.identity.startswith("sha256:")
    assert autoencoder.group == "sd1"
    by_path = create_autoencoder(str(tmp_path / "sd15"))
    assert by_path.latent_channels == 4 and by_path.group == str(tmp_path / "sd15")
    config = json.loads((tmp_path / "sd15" / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderKL"


def test_local_folder_of_another_class_is_loaded_with_its_class(tmp_path):
    create_autoencoder("sana", random_weights=True).module.save_pretrained(tmp_path / "dc")
    autoencoder = create_autoencoder(str(tmp_path / "dc"))
    assert type(autoencoder.module).__name__ == "AutoencoderDC"
    assert autoencoder.spatial_factor == 32 and autoencoder.latent_channels == 32


def test_identity_is_known_before_loading_and_matches_after(tmp_path, tae_dir):
    create_autoencoder("kandinsky22", random_weights=True).module.save_pretrained(tmp_path / "vq")
    cases = [
        resolve_model("taesd", weights_dir=tae_dir),
        resolve_model("sd15", random_weights=True),
        resolve_model(str(tmp_path / "vq")),
        resolve_model(str(tmp_path / "vq"), quantize=False),
    ]
    for handle in cases:
        predicted = handle.identity
        assert predicted is not None and not handle.loaded
        assert handle.load().identity == predicted, handle
    assert cases[2].identity.endswith("quantize=on") and cases[3].identity.endswith("quantize=off")


def test_weights_swapped_in_a_folder_change_its_identity(tmp_path):
    folder = tmp_path / "vae"
    create_autoencoder("sd15", random_weights=True).module.save_pretrained(folder)
    before = resolve_model(str(folder)).identity
    create_autoencoder("sd15", random_weights=True, seed=1).module.save_pretrained(folder)
    after = resolve_model(str(folder)).identity
    assert before.startswith("sha256:") and after.startswith("sha256:") and before != after
    assert resolve_model(str(folder)).load().identity == after


def test_resolving_local_weights_does_not_import_torch(tae_dir):
    code = (
        "import sys; from aedr.autoencoders import resolve_model; "
        f"h = resolve_model('taesd', weights_dir={str(tae_dir)!r}); "
        "assert h.identity.startswith('sha256:'); assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cached_hub_snapshot_is_identified_and_loaded_by_revision(tmp_path):
    """A hub model in the local cache: identity from the snapshot, loaded offline by revision."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-vae"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    vae = create_autoencoder("sd15", random_weights=True).module
    vae.save_pretrained(repo / "snapshots" / revision / "vae")
    code = (
        "from aedr.autoencoders import resolve_model; h = resolve_model('someone/tiny-vae:vae'); "
        "before = h.identity; ae = h.load(); assert ae.identity == before, (before, ae.identity); "
        "print(before)"
    )
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == f"hub:someone/tiny-vae/vae@{revision}"
