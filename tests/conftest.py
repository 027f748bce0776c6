"""Shared fixtures. Data from ``../shared`` is found through ``--shared-dir`` or
``$AEDR_SHARED_DIR`` (default: the ``shared`` folder beside the repository); tests that need it skip
with the reason when it is absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.utils import logging as diffusers_logging
from hypothesis import settings
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# The suite's numbers must not depend on the CPU that runs it: --dtype auto picks bf16 on CPUs
# with native bf16, so every test (and every CLI process it starts) sees a CPU without it, unless
# it states otherwise (tests of the bf16 default).
os.environ["AEDR_NATIVE_BF16"] = "0"

# diffusers binds its log handler to sys.stderr when first used: bind it now, to the session's
# stream, not to one test's captured stderr (closed after that test, later logs would fail).
diffusers_logging.get_logger("diffusers")

# Property tests: reproducible (derandomized) and free of timing flakiness on a busy CI machine.
settings.register_profile("aedr", deadline=None, derandomize=True, max_examples=100)
settings.load_profile("aedr")


def skip_unless_ci(reason: str) -> None:
    """Skip, saying why, where a test's data or tool is absent; under ``CI=true`` fail instead,
    since ``.ci/run`` provides every one of them (../shared, the browser, the extras)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason, allow_module_level=True)


def import_or_skip(module: str, reason: str):
    """``pytest.importorskip`` that fails under ``CI=true`` (see ``skip_unless_ci``)."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        skip_unless_ci(reason)


def pytest_addoption(parser):
    parser.addoption("--shared-dir", default=None, help="path of the shared data folder")


def _shared_dir(config) -> Path:
    given = config.getoption("--shared-dir") or os.environ.get("AEDR_SHARED_DIR")
    return Path(given) if given else REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _scratch_in_basetemp(tmp_path_factory):
    """Temporary files of the code under test (upload folders, calibration scratch) go to the
    session's folder, which pytest removes when every test passed: none pile up in /tmp."""
    tempfile.tempdir = str(tmp_path_factory.mktemp("scratch"))
    yield
    tempfile.tempdir = None


@pytest.fixture(scope="session")
def shared_dir(pytestconfig) -> Path:
    path = _shared_dir(pytestconfig)
    if not path.is_dir():
        skip_unless_ci(
            f"shared data folder not found at {path} (set AEDR_SHARED_DIR or --shared-dir)"
        )
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_dir) -> Path:
    path = shared_dir / "reference" / "aedr-official"
    if not path.is_dir():
        skip_unless_ci(f"authors' reference outputs not found at {path}")
    return path


@pytest.fixture(scope="session")
def tae_dir(pytestconfig) -> Path:
    given = os.environ.get("AEDR_WEIGHTS_DIR")
    path = Path(given) if given else _shared_dir(pytestconfig) / "weights" / "tae"
    if not (path / "taesd_encoder.safetensors").is_file():
        skip_unless_ci(f"tiny autoencoder weights not found in {path} (set AEDR_WEIGHTS_DIR)")
    return path


@pytest.fixture(scope="session")
def random_tiny():
    """A tiny autoencoder with random (seeded) weights: real architecture, fast, no files."""
    from aedr.autoencoders.tiny import TinyAutoencoder, tiny_decoder, tiny_encoder

    torch.manual_seed(0)
    return TinyAutoencoder("random-tiny", tiny_encoder(4), tiny_decoder(4), "random:0")


def smooth_image(seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A smooth random RGB image (uint8, H x W x 3) with some texture."""
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    channels = [
        127
        + 100 * np.sin(xx / rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(3, 9))
        for _ in range(3)
    ]
    noise = rng.normal(0, 8, (height, width, 3))
    return np.clip(np.stack(channels, -1) + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A folder of three small PNG images (64 x 48), one in a subfolder."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for index, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        Image.fromarray(smooth_image(index)).save(folder / name, quality=95)
    return folder


@pytest.fixture(autouse=True)
def private_score_store(tmp_path_factory, monkeypatch):
    """Each test gets its own score store and calibration library, never the user's cache (CLI
    runs inherit them)."""
    folder = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("AEDR_STORE", str(folder / "scores.sqlite"))
    monkeypatch.setenv("AEDR_CALIBRATIONS", str(folder / "calibrations"))


TEST_PROVENANCE = {
    "identity": "sha256:test", "measurement": "reconstruction", "dtype": "fp32", "device": "cpu",
    "latent": "mode", "seed": None, "alignment": "crop", "resize_filter": None, "crop": None,
    "crops": 1, "homogeneity_levels": 32, "aedr_version": "test", "grid": None, "noise": None,
    "exif": "transpose", "loss_dtype": "fp64", "inversion_resize": False, "preset": None,
}  # fmt: skip


def loss_record(loss1: float, loss2: float, homogeneity: float, **extra) -> dict:
    """A measurement record as the scorer writes it (with a test provenance unless given)."""
    return {"measurement": "reconstruction", "loss1": loss1, "loss2": loss2,
            "homogeneity": homogeneity, "error": "", "provenance": TEST_PROVENANCE, **extra}  # fmt: skip


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, random_tiny) -> Path:
    """The random tiny autoencoder saved as a pair of weight files, loadable by path."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    for part in ("encoder", "decoder"):
        save_file(random_tiny.module[part].state_dict(), folder / f"rand_{part}.safetensors")
    return folder / "rand_encoder.safetensors"


@pytest.fixture(scope="session")
def small_kl():
    """A small diffusers AutoencoderKL with random weights: a real posterior to sample from."""
    from diffusers import AutoencoderKL

    from aedr.autoencoders.diffusers_adapter import DiffusersAutoencoder

    torch.manual_seed(0)
    module = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8, layers_per_block=1,
    )  # fmt: skip
    return DiffusersAutoencoder("small-kl", module, "random:small-kl", size_multiple=8)


def c2pa_signed_jpeg(rgb: np.ndarray, generator: str = "Example Diffusion 3") -> bytes:
    """A JPEG of ``rgb`` carrying a C2PA manifest whose action declares it made by ``generator``,
    signed with a throw-away test CA (so readers report the signer as untrusted)."""
    import datetime
    import io
    import json

    c2pa = import_or_skip("c2pa", "c2pa-python is not installed")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer_name: str, issuer_key, authority: bool):
        def name(common):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aedr tests")])  # fmt: skip

        usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "encipher_only", "decipher_only"), False)  # fmt: skip
        builder = (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=authority,
                                         crl_sign=authority, **usage), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )  # fmt: skip
        if not authority:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    authority_key, signer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    authority = certificate("aedr test CA", authority_key, "aedr test CA", authority_key, True)
    signer = certificate("aedr test signer", signer_key, "aedr test CA", authority_key, False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (signer, authority))
    private = signer_key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())  # fmt: skip
    manifest = {
        "claim_generator_info": [{"name": "aedr-tests", "version": "1"}], "title": "made.jpg",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
            "action": "c2pa.created", "softwareAgent": {"name": generator},
            "digitalSourceType":
                "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
        }]}}],
    }  # fmt: skip
    source, signed = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(source, "JPEG", quality=90)
    source.seek(0)
    info = c2pa.C2paSignerInfo(
        alg=c2pa.C2paSigningAlg.ES256, sign_cert=chain, private_key=private, ta_url=None
    )
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(c2pa.Signer.from_info(info), "image/jpeg", source, signed)
    return signed.getvalue()


def cpu_info(tmp_path: Path, flags: str) -> Path:
    """A /proc/cpuinfo of two processors with these ``flags``, for mocking the CPU."""
    path = tmp_path / f"cpuinfo-{abs(hash(flags))}"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path
