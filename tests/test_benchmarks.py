"""The GPU script's logic, run on the CPU at tiny sizes (CI has no GPU; where a device is lent it
runs as documented in docs/performance.md)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_gpu_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), *arguments],
        capture_output=True, text=True, cwd=REPO / "benchmarks", timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


def test_the_gpu_script_prints_its_tables_on_the_cpu(tae_dir, shared_dir):
    done = run_gpu_script("--device", "cpu", "--model", "taesd", "--size", "64", "--images", "4",
                          "--dtypes", "fp32", "--batch", "2", "--tracer-images", "0",
                          "--zoo-size", "32", "--zoo-models", "taesd")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("## ") and "taesd (trained weights), 64 px, 4 images" in lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| the authors' loop")
            or line.startswith("| aedr score")]  # fmt: skip
    assert [(r[1], r[2]) for r in rows] == [("fp32", "1"), ("fp32", "1"), ("fp32", "2")]
    assert rows[0][5] == "1.00" and all(float(r[4]) > 0 for r in rows)
    assert all(r[7].rstrip(" |") == "4/4" for r in rows)  # the same verdicts as the loop
    assert any(line.startswith("| taesd | AutoencoderTiny") for line in lines)  # the zoo


def test_without_cuda_it_says_gpu_numbers_are_not_measured():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the script runs for real")
    done = run_gpu_script("--device", "cuda")
    assert done.returncode == 2 and "GPU numbers are not measured" in done.stderr
