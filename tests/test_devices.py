"""``--device auto`` picks an accelerator only where one exists, without importing torch."""

import sys

import pytest
from conftest import cpu_info

from aedr.autoencoders import devices


@pytest.fixture
def without_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(devices.platform, "system", lambda: "Linux")


def test_auto_is_cpu_where_nothing_else_exists(without_torch, monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "NVIDIA_DRIVER", tmp_path / "no-driver")
    assert devices.auto_device() == "cpu"
    monkeypatch.setattr(devices, "_cuda_build", lambda: True)
    assert devices.auto_device() == "cpu"  # a CUDA build without a driver


def test_auto_is_cuda_with_a_cuda_build_and_a_driver(without_torch, monkeypatch, tmp_path):
    driver = tmp_path / "version"
    driver.write_text("NVRM version: 550")
    monkeypatch.setattr(devices, "NVIDIA_DRIVER", driver)
    monkeypatch.setattr(devices, "_cuda_build", lambda: True)
    assert devices.auto_device() == "cuda"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.auto_device() == "cpu"  # every GPU hidden
    monkeypatch.setattr(devices, "_cuda_build", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.auto_device() == "cpu"  # a CPU build of torch


def test_this_machines_torch_build_is_read_without_importing_it():
    assert devices._cuda_build() is ("+cpu" not in __import__("torch").__version__)


def test_the_cli_resolves_auto_before_any_command_runs(monkeypatch):
    from aedr import cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_models", lambda args: seen.setdefault("device", args.device))
    cli.main(["models"])
    assert seen["device"] == devices.auto_device() != "auto"


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.delenv(devices.NATIVE_BF16_ENV)
    assert not devices.native_bf16(cpu_info(tmp_path, "fpu sse2 avx2 avx512f avx512_vnni"))
    assert devices.native_bf16(cpu_info(tmp_path, "fpu avx512f avx512_bf16"))
    assert devices.native_bf16(cpu_info(tmp_path, "fpu amx_bf16 amx_tile"))
    assert not devices.native_bf16(tmp_path / "absent")  # not Linux: not measured, fp32
    assert not devices.native_bf16(cpu_info(tmp_path, "avx512_bf16x"))  # whole flags only


def test_native_bf16_can_be_stated(tmp_path, monkeypatch):
    with_bf16 = cpu_info(tmp_path, "avx512_bf16")
    monkeypatch.setenv(devices.NATIVE_BF16_ENV, "0")
    assert not devices.native_bf16(with_bf16)
    monkeypatch.setenv(devices.NATIVE_BF16_ENV, "1")
    assert devices.native_bf16(tmp_path / "absent")
