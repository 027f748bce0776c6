"""The command line, run as users run it: in a subprocess, checking outputs and exit codes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from aedr.calibration import Calibration


def run(*args, env=None, check_code=None):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "aedr", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    if check_code is not None:
        assert result.returncode == check_code, result.stderr
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, random_tiny) -> Path:
    """The random tiny autoencoder saved as a pair of weight files, loadable by path."""
    folder = tmp_path_factory.mktemp("weights")
    for part in ("encoder", "decoder"):
        save_file(random_tiny.module[part].state_dict(), folder / f"rand_{part}.safetensors")
    return folder / "rand_encoder.safetensors"


def test_help_and_version():
    assert "attribute" in run("--help", check_code=0).stdout
    assert run("--version", check_code=0).stdout.startswith("aedr ")
    assert run("score", check_code=2).stderr  # missing arguments: usage error


def test_models_table_and_json():
    table = run("models", check_code=0).stdout
    for name in ("taesd", "taef2", "sd15", "sdxl", "sd35", "flux1", "sana", "qwen-image"):
        assert name in table
    assert "gpu dtype" in table.splitlines()[0] and "group" in table.splitlines()[0]
    rows = {row["name"]: row for row in json.loads(run("models", "--json", check_code=0).stdout)}
    assert rows["sd2base"]["group"] == rows["sd21"]["group"] == "sd2"
    assert rows["sana"]["size_multiple"] == 32 and rows["flux2"]["gated"]
    assert rows["kandinsky22"]["license"] == "Apache-2.0"


def test_models_check_times_random_weight_architectures_and_reports_failures(tmp_path):
    result = run(
        "models", "--check", "sd15", "no-such-model", "--random-weights", "--size", "64", "--json",
        check_code=1,
    )  # fmt: skip
    good, bad = json.loads(result.stdout)
    assert good["model"] == "sd15" and good["finite"] and good["size"] == 64
    assert good["encode_ms"] > 0 and good["decode_ms"] > 0 and good["ratio"] > 0
    assert not bad["finite"] and "random weights need a registry name" in bad["error"]


def test_models_check_real_tiny_weights(tae_dir):
    table = run(
        "models", "--check", "taesd", "--weights-dir", tae_dir, "--size", "64", check_code=0
    )
    assert "sha256:" in table.stdout and "True" in table.stdout


def test_score_writes_records_and_reports_failures(model_file, image_folder, tmp_path):
    (image_folder / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "scores.jsonl"
    run("score", image_folder, "--model", model_file, "--out", out, check_code=1)
    records = read_jsonl(out)
    assert len(records) == 4
    broken = [r for r in records if r["path"].endswith("broken.png")]
    assert broken[0]["error"] and broken[0]["signal"] is None
    assert all(r["signal"] > 0 for r in records if not r["error"])
    # an existing output is not overwritten unless asked
    assert (
        "--overwrite"
        in run("score", image_folder, "--model", model_file, "--out", out, check_code=2).stderr
    )
    csv_out = tmp_path / "scores.csv"
    run(
        "score", image_folder / "a.png", "--model", model_file, "--out", csv_out, "-q", check_code=0
    )
    (row,) = list(csv.DictReader(csv_out.open()))
    assert float(row["ratio"]) == pytest.approx(float(row["loss1"]) / float(row["loss2"]))


def test_homogeneity_command(image_folder):
    result = run("homogeneity", image_folder, check_code=0)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 and all(0 < row["homogeneity"] <= 1 for row in rows)


def test_calibrate_from_authors_loss_columns(reference_dir, tmp_path):
    losses = np.loadtxt(reference_dir / "Result" / "SD1.5_SD1.5_l2.txt")
    glcm = np.loadtxt(reference_dir / "GLCM" / "SD1.5.txt")
    table = tmp_path / "sd15.csv"
    with table.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["loss1", "loss2", "homogeneity"])
        writer.writerows(zip(losses[:, 0], losses[:, 1], glcm, strict=True))
    out = tmp_path / "sd15.json"
    run("calibrate", "--scores", table, "--model", "sd15", "--method", "aedr", "--out", out,
        check_code=0)  # fmt: skip
    calibration = Calibration.load(out)
    assert calibration.threshold == pytest.approx(1.0364583773111364, abs=1e-9)  # the paper's
    assert calibration.n == 500 and calibration.model == "sd15"
    fitted = tmp_path / "fitted.json"
    run("calibrate", "--scores", table, "--model", "sd15", "--out", fitted, check_code=0)
    assert Calibration.load(fitted).beta == pytest.approx(0.285, abs=1e-3)  # the default


def test_calibrate_then_attribute(model_file, image_folder, tmp_path):
    calibration = tmp_path / "rand.json"
    scores = tmp_path / "calibration-scores.jsonl"
    run("calibrate", "--model", model_file, image_folder, "--out", calibration,
        "--scores-out", scores, check_code=0)  # fmt: skip
    saved = json.loads(calibration.read_text())
    assert saved["n"] == 3 and saved["autoencoder_identity"].startswith("sha256:")
    assert saved["settings"]["latent"] == "mode" and saved["aedr_version"]
    assert len(read_jsonl(scores)) == 3
    out = tmp_path / "attribution.jsonl"
    run("attribute", image_folder, "--calibration", calibration, "--out", out, check_code=0)
    rows = read_jsonl(out)
    assert len(rows) == 3
    for row in rows:
        assert row["verdict"] in (str(model_file), "none")
        assert row["belongs"] == (row["signal"] < row["threshold"])


def test_unavailable_model_is_a_clear_message_not_a_traceback(tmp_path, image_folder):
    env = {"HF_HOME": str(tmp_path / "hf"), "AEDR_WEIGHTS_DIR": str(tmp_path)}
    result = run("score", image_folder, "--model", "sd15", env=env, check_code=2)
    assert "sd15" in result.stderr and "--weights-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_warm_rerun_answers_from_the_store_without_importing_torch(
    model_file, image_folder, tmp_path
):
    store = tmp_path / "store.sqlite"
    first = run("score", image_folder, "--model", model_file, "--store", store, check_code=0)
    code = (
        "import sys; from aedr.cli import main; "
        f"rc = main(['score', {str(image_folder)!r}, '--model', {str(model_file)!r}, "
        f"'--store', {str(store)!r}, '-q']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    uncached = run("score", image_folder, "--model", model_file, "--no-cache", "-q", check_code=0)
    assert uncached.stdout == first.stdout


def test_big_image_is_refused_with_the_option_to_use(model_file, tmp_path):
    from PIL import Image

    Image.new("RGB", (256, 256), "gray").save(tmp_path / "big.png")
    result = run(
        "score",
        tmp_path / "big.png",
        "--model",
        model_file,
        "--max-model-pixels",
        "1000",
        check_code=1,
    )
    assert "--crop" in json.loads(result.stdout)["error"]
    cropped = run("score", tmp_path / "big.png", "--model", model_file, "--max-model-pixels", "1000",
                  "--crop", "24", "--crops", "3", check_code=None)  # fmt: skip
    assert "--crop" not in cropped.stdout


def photo_folder(tmp_path, count=4, size=(72, 80)) -> Path:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir(parents=True)
    for index in range(count):
        rng = np.random.default_rng(index)
        pixels = (rng.random((size[0] // 8, size[1] // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize(size[::-1], Image.BILINEAR).save(folder / f"{index}.png")
    return folder


def test_generator_free_calibration_and_alpha_auto(model_file, tmp_path):
    photos = photo_folder(tmp_path, size=(260, 260))
    free = tmp_path / "free.json"
    made = tmp_path / "made"
    # random weights decode every image to the same flat texture: no homogeneity spread to fit
    run("calibrate", "--model", model_file, "--reference-photos", photos, "--synthetic", "12",
        "--save-synthetic", made, "--method", "aedr", "--out", free, check_code=0)  # fmt: skip
    calibration = Calibration.load(free)
    assert calibration.n == 12 and len(list(made.glob("*.png"))) == 12
    assert "generator-free" in calibration.tuning["belonging_images"]
    scores = tmp_path / "own.jsonl"
    run("score", made, "--model", model_file, "--out", scores, check_code=0)
    negatives = tmp_path / "neg.jsonl"
    run("score", photos, "--model", model_file, "--out", negatives, check_code=0)
    tuned = tmp_path / "tuned.json"
    result = run("calibrate", "--scores", scores, "--alpha", "auto", "--negatives", negatives,
                 "--method", "aedr", "--out", tuned, check_code=0)  # fmt: skip
    assert "alpha auto" in result.stderr
    tuning = Calibration.load(tuned).tuning
    assert tuning["alpha"] == "auto" and 0 <= tuning["tuning_accuracy"] <= 1
    failed = run("calibrate", "--scores", scores, "--alpha", "auto", "--out", tmp_path / "x.json",
                 check_code=2)  # fmt: skip
    assert "--negatives" in failed.stderr


def test_methods_and_evaluate_report(model_file, tmp_path):
    photos = photo_folder(tmp_path, count=6)
    made = tmp_path / "made"
    run("calibrate", "--model", model_file, "--reference-photos", photo_folder(tmp_path / "ref", size=(260, 260)),
        "--synthetic", "8", "--save-synthetic", made, "--method", "aedr", "--out", tmp_path / "c.json",
        check_code=0)  # fmt: skip
    scores = tmp_path / "scores.csv"
    run("score", made, photos, "--model", model_file, "--out", scores, check_code=0)
    single = tmp_path / "single.jsonl"
    run("score", photos, "--model", model_file, "--method", "single-loss", "--out", single,
        check_code=0)  # fmt: skip
    assert all(r["signal"] == r["loss1"] for r in read_jsonl(single))
    labels = tmp_path / "labels.csv"
    rows = [f"{p},{model_file if p.parent == made else 'real'}"
            for p in sorted(made.glob("*.png")) + sorted(photos.glob("*.png"))]  # fmt: skip
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "report"
    for method in ("aedr", "ratio", "single-loss"):
        result = run("evaluate", "--scores", scores, "--labels", labels, "--method", method,
                     "--out", out / method, check_code=0)  # fmt: skip
        assert "ROC AUC" in result.stdout
        assert (out / method / "report.html").is_file()
    again = run("evaluate", "--scores", scores, "--labels", labels, "--out", out / "aedr",
                check_code=2)  # fmt: skip
    assert "--overwrite" in again.stderr
