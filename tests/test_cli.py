"""The command line, run in-process through ``main`` (as the console script runs it), checking
outputs and exit codes; a subprocess only where the process itself is what is tested."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from aedr.cli import main
from aedr.decide.calibration import Calibration


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args, code=N)``: run ``aedr args`` in this process; stdout, stderr, returncode."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(*args, code=None):
        try:
            returncode = main([str(a) for a in args])
        except SystemExit as exit:  # argparse: --help, --version, usage errors
            returncode = exit.code
        output = capsys.readouterr()
        if code is not None:
            assert returncode == code, output.err
        return SimpleNamespace(returncode=returncode, stdout=output.out, stderr=output.err)

    return run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_help_and_version(cli):
    assert "attribute" in cli("--help", code=0).stdout
    assert cli("--version", code=0).stdout.startswith("aedr ")
    assert cli("score", code=2).stderr  # missing arguments: usage error


def test_models_table_and_json(cli):
    table = cli("models", code=0).stdout
    for name in ("taesd", "taef2", "sd15", "sdxl", "sd35", "flux1", "sana", "qwen-image"):
        assert name in table
    assert "gpu dtype" in table.splitlines()[0] and "group" in table.splitlines()[0]
    rows = {row["name"]: row for row in json.loads(cli("models", "--json", code=0).stdout)}
    assert rows["sd2base"]["group"] == rows["sd21"]["group"] == "sd2"
    assert rows["sana"]["size_multiple"] == 32 and rows["flux2"]["gated"]
    assert rows["kandinsky22"]["license"] == "Apache-2.0"
    assert "cpu dtype here" in table.splitlines()[0] and rows["taesd"]["cpu_dtype"] == "fp32"


def test_models_check_times_random_weight_architectures_and_reports_failures(cli):
    result = cli(
        "models", "--check", "sd15", "no-such-model", "--random-weights", "--size", "64", "--json",
        code=1,
    )  # fmt: skip
    good, bad = json.loads(result.stdout)
    assert good["model"] == "sd15" and good["finite"] and good["size"] == 64
    assert good["encode_ms"] > 0 and good["decode_ms"] > 0 and good["ratio"] > 0
    assert not bad["finite"] and "random weights need a registry name" in bad["error"]


def test_models_check_real_tiny_weights(cli, tae_dir):
    table = cli("models", "--check", "taesd", "--weights-dir", tae_dir, "--size", "64", code=0)
    assert "sha256:" in table.stdout and "True" in table.stdout


def test_score_writes_measurements_and_reports_failures(cli, model_file, image_folder, tmp_path):
    (image_folder / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "scores.jsonl"
    cli("score", image_folder, "--model", model_file, "--out", out, code=1)
    records = read_jsonl(out)
    assert len(records) == 4
    (broken,) = [r for r in records if r["path"].endswith("broken.png")]
    assert broken["error"] and broken["loss1"] is None and broken["provenance"] is None
    for record in records:
        if not record["error"]:
            assert record["ratio"] > 0 and record["provenance"]["identity"].startswith("sha256:")
    # an existing output is not overwritten unless asked
    assert "--overwrite" in cli("score", image_folder, "--model", model_file, "--out", out,
                                code=2).stderr  # fmt: skip
    csv_out = tmp_path / "scores.csv"
    cli("score", image_folder / "a.png", "--model", model_file, "--out", csv_out, "-q", code=0)
    (row,) = list(csv.DictReader(csv_out.open()))
    assert float(row["ratio"]) == pytest.approx(float(row["loss1"]) / float(row["loss2"]))
    assert json.loads(row["provenance"])["dtype"] == "fp32"


def test_homogeneity_command(cli, image_folder):
    rows = [
        json.loads(line) for line in cli("homogeneity", image_folder, code=0).stdout.splitlines()
    ]
    assert len(rows) == 3 and all(0 < row["homogeneity"] <= 1 for row in rows)


def authors_table(reference_dir, tmp_path) -> Path:
    losses = np.loadtxt(reference_dir / "Result" / "SD1.5_SD1.5_l2.txt")
    glcm = np.loadtxt(reference_dir / "GLCM" / "SD1.5.txt")
    table = tmp_path / "sd15.csv"
    with table.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["loss1", "loss2", "homogeneity"])
        writer.writerows(zip(losses[:, 0], losses[:, 1], glcm, strict=True))
    return table


def test_calibrate_from_authors_loss_columns_states_their_settings(cli, reference_dir, tmp_path):
    table, out = authors_table(reference_dir, tmp_path), tmp_path / "sd15.json"
    refused = cli("calibrate", "--scores", table, "--model", "sd15", "--out", out, code=2)
    assert "can read none of the 500 records" in refused.stderr  # losses alone: no highpass
    assert "use a statistic of the losses (fitted, aedr)" in refused.stderr and not out.exists()
    refused = cli("calibrate", "--scores", table, "--model", "sd15", "--statistic", "fitted", "--out",
                  out, code=2)  # fmt: skip
    assert "carry no provenance" in refused.stderr and not out.exists()
    assumed = "latent=sample,seed=1,alignment=resize,dtype=fp32,device=cuda"
    cli("calibrate", "--scores", table, "--model", "sd15", "--statistic", "aedr", "--out", out,
        "--assume-settings", assumed, code=0)  # fmt: skip
    calibration = Calibration.load(out)
    assert calibration.threshold == pytest.approx(1.0364583773111364, abs=1e-9)  # the paper's
    assert calibration.n == 500 and calibration.model == "sd15"
    assert calibration.provenance_assumed and calibration.provenance["latent"] == "sample"
    assert calibration.provenance["device"] == "cuda" and calibration.provenance["seed"] == 1
    fitted = tmp_path / "fitted.json"
    cli("calibrate", "--scores", table, "--model", "sd15", "--statistic", "fitted", "--out", fitted,
        "--assume-settings", assumed, code=0)  # fmt: skip
    assert Calibration.load(fitted).parameters["beta"] == pytest.approx(0.285, abs=1e-3)
    bad = cli("calibrate", "--scores", table, "--out", tmp_path / "x.json", "--assume-settings",
              "colour=blue", code=2)  # fmt: skip
    assert "not KEY=VALUE" in bad.stderr
    flag = cli("calibrate", "--scores", table, "--out", tmp_path / "y.json", "--latent", "sample",
               code=2)  # fmt: skip
    assert "--latent cannot apply to --scores" in flag.stderr


def test_calibrate_then_attribute(cli, model_file, image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)  # 16 of the 64: faster
    calibration = tmp_path / "rand.json"
    scores = tmp_path / "calibration-scores.jsonl"
    made = cli("calibrate", "--model", model_file, image_folder, "--out", calibration,
               "--scores-out", scores, code=0)  # fmt: skip
    saved = json.loads(calibration.read_text())
    assert saved["n"] == 3 and saved["provenance"]["identity"].startswith("sha256:")
    assert saved["provenance"]["latent"] == "mode" and saved["aedr_version"]
    assert len(read_jsonl(scores)) == 3  # the negatives are not the user's measurements
    negatives = saved["negatives"]  # the shipped photos, measured by default
    assert negatives["n"] == 16 and "scikit-image" in negatives["sources"][0]
    shortfalls = negatives.get("shortfalls") or [""] * 16  # too little detail: accepted nowhere
    accepted = [s < saved["threshold"] and not why
                for s, why in zip(negatives["signals"], shortfalls, strict=True)]  # fmt: skip
    assert 8 <= sum(negatives["grey"]) < 16  # the grey photos' tiles (and more), told apart
    colour = [a for a, grey in zip(accepted, negatives["grey"], strict=True) if not grey]
    assert (f"false acceptance {sum(accepted) / 16:.1%} of 16 negatives" in made.stderr
            and f"; in colour {sum(colour) / len(colour):.1%} of {len(colour)}; grey"
            in made.stderr)  # fmt: skip
    out = tmp_path / "attribution.jsonl"
    said = cli("attribute", image_folder, "--calibration", calibration, "--out", out, code=0)
    # colour images: stated on the colour tiles
    assert f"{sum(colour)} of {len(colour)} negative images" in said.stderr
    rows = read_jsonl(out)
    assert len(rows) == 3
    assert sorted(saved["jpeg"], key=int) == ["70", "85", "95"]  # no flag: the default ladder
    at_95 = Calibration.load(calibration).at_jpeg_quality(95).negatives_like(False)
    for row in rows:
        assert row["verdict"] in (str(model_file), "none") and row["statistic"] == "highpass"
        assert row["belongs"] == (row["signal"] < row["threshold"])
        if row["path"].endswith(".jpg"):  # JPEG 95: decided at its quality's thresholds
            assert (row["threshold_quality"], row["threshold"]) == (95, at_95.threshold)
            assert row["false_acceptance"] == at_95.false_acceptance
            continue
        assert row["threshold_quality"] is None
        assert row["false_attribution"] == row["false_acceptance"] == sum(colour) / len(colour)
    strict = tmp_path / "strict.jsonl"
    said = cli("attribute", image_folder, "--calibration", calibration, "--out", strict,
               "--max-false-attribution", "0", code=0)  # fmt: skip
    assert f"0 of {len(colour)} negative images (0%)" in said.stderr
    for row in read_jsonl(strict):
        fitted = at_95.threshold if row["path"].endswith(".jpg") else saved["threshold"]
        assert row["threshold"] <= fitted
    refused = cli(
        "attribute", image_folder, "--calibration", calibration, "--dtype", "bf16", code=2
    )
    assert "dtype: 'fp32' vs 'bf16'" in refused.stderr


def test_calibrate_from_records_takes_their_provenance(cli, model_file, image_folder, tmp_path):
    scores = tmp_path / "s.jsonl"
    cli("score", image_folder, "--model", model_file, "--resize", "--out", scores, "-q", code=0)
    out = tmp_path / "c.json"
    cli("calibrate", "--scores", scores, "--statistic", "aedr", "--out", out, "-q", code=0)
    calibration = Calibration.load(out)
    assert calibration.provenance["alignment"] == "resize" and not calibration.provenance_assumed
    assert calibration.provenance == read_jsonl(scores)[0]["provenance"]


def test_unavailable_model_is_a_clear_message_not_a_traceback(cli, tmp_path, image_folder,
                                                              monkeypatch):  # fmt: skip
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("AEDR_WEIGHTS_DIR", str(tmp_path))
    result = cli("score", image_folder, "--model", "taef2", code=2)
    assert "taef2" in result.stderr and "--weights-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_warm_rerun_answers_from_the_store_without_importing_torch(
    cli, model_file, image_folder, tmp_path
):
    store = tmp_path / "store.sqlite"
    first = cli("score", image_folder, "--model", model_file, "--store", store, code=0)
    code = (
        "import sys; from aedr.cli import main; "
        f"rc = main(['score', {str(image_folder)!r}, '--model', {str(model_file)!r}, "
        f"'--store', {str(store)!r}, '-q']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=environment, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    uncached = cli("score", image_folder, "--model", model_file, "--no-cache", "-q", code=0)
    assert uncached.stdout == first.stdout


def test_big_image_is_refused_with_the_option_to_use(cli, model_file, tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)).save(
        tmp_path / "big.png"
    )
    result = cli("score", tmp_path / "big.png", "--model", model_file, "--max-model-pixels",
                 "1000", code=1)  # fmt: skip
    assert "model-pixel limit 1000" in json.loads(result.stdout)["error"]
    assert "--crop N" in result.stderr and "--max-model-pixels" in result.stderr
    cropped = cli("score", tmp_path / "big.png", "--model", model_file, "--max-model-pixels",
                  "1000", "--crop", "24", "--crops", "3", code=0)  # fmt: skip
    (record,) = [json.loads(line) for line in cropped.stdout.splitlines()]
    assert record["error"] == "" and record["provenance"]["crop"] == 24 and record["ratio"] > 0


def photo_folder(tmp_path, count=4, size=(72, 80)) -> Path:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir(parents=True)
    for index in range(count):
        rng = np.random.default_rng(index)
        pixels = (rng.random((size[0] // 8, size[1] // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize(size[::-1], Image.BILINEAR).save(folder / f"{index}.png")
    return folder


def test_generator_free_calibration_and_alpha_auto(cli, model_file, tmp_path):
    photos = photo_folder(tmp_path, size=(260, 260))
    free = tmp_path / "free.json"
    made = tmp_path / "made"
    # random weights decode every image to the same flat texture: no homogeneity spread to fit
    cli("calibrate", "--model", model_file, "--reference-photos", photos, "--synthetic", "12",
        "--save-synthetic", made, "--statistic", "aedr", "--out", free, "--no-default-negatives",
        "--enlargements", "none", code=0)  # fmt: skip
    calibration = Calibration.load(free)
    assert calibration.n == 12 and len(list(made.glob("*.png"))) == 12
    assert "generator-free" in calibration.tuning["belonging_images"]
    scores = tmp_path / "own.jsonl"
    cli("score", made, "--model", model_file, "--out", scores, code=0)
    negatives = tmp_path / "neg.jsonl"
    cli("score", photos, "--model", model_file, "--out", negatives, code=0)
    tuned = tmp_path / "tuned.json"
    result = cli("calibrate", "--scores", scores, "--alpha", "auto", "--negatives", negatives,
                 "--statistic", "aedr", "--out", tuned, code=0)  # fmt: skip
    assert "alpha auto" in result.stderr
    tuning = Calibration.load(tuned).tuning
    assert tuning["alpha"] == "auto" and 0 <= tuning["tuning_accuracy"] <= 1
    failed = cli("calibrate", "--scores", scores, "--alpha", "auto", "--out", tmp_path / "x.json",
                 code=2)  # fmt: skip
    assert "--negatives" in failed.stderr


def test_methods_and_evaluate_report(cli, model_file, tmp_path):
    photos = photo_folder(tmp_path, count=6)
    made = tmp_path / "made"
    reference = photo_folder(tmp_path / "ref", size=(260, 260))
    cli("calibrate", "--model", model_file, "--reference-photos", reference, "--synthetic", "8",
        "--save-synthetic", made, "--statistic", "aedr", "--out", tmp_path / "c.json",
        "--no-default-negatives", "--enlargements", "none", code=0)  # fmt: skip
    scores = tmp_path / "scores.csv"
    cli("score", made, photos, "--model", model_file, "--out", scores, code=0)
    labels = tmp_path / "labels.csv"
    rows = [f"{p},{model_file if p.parent == made else 'real'}"
            for p in sorted(made.glob("*.png")) + sorted(photos.glob("*.png"))]  # fmt: skip
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "report"
    for method in ("aedr", "ratio", "single-loss"):
        result = cli("evaluate", "--scores", scores, "--labels", labels, "--statistic", method,
                     "--out", out / method, code=0)  # fmt: skip
        assert "ROC AUC" in result.stdout
        assert json.loads((out / method / "metrics.json").read_text())["statistic"] == method
    again = cli("evaluate", "--scores", scores, "--labels", labels, "--out", out / "aedr", code=2)
    assert "--overwrite" in again.stderr


def help_options(*args: str) -> list[str]:
    import contextlib
    import io

    from aedr.cli import build_parser

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        build_parser().parse_args(list(args))
    return [line.split()[0].rstrip(",") for line in printed.getvalue().splitlines()
            if line.startswith("  -")]  # fmt: skip


@pytest.mark.parametrize("command", ["score", "calibrate", "attribute", "localize", "serve"])
def test_the_main_help_shows_at_most_20_options_and_help_all_shows_every_one(command):
    main_help, full = help_options(command, "--help"), help_options(command, "--help-all")
    assert len(main_help) <= 20, main_help
    assert set(main_help) <= set(full) | {"--help-all"}
    if command in ("score", "calibrate"):
        assert "--loss-dtype" in full and "--loss-dtype" not in main_help
        assert "--store" in full and "--store" not in main_help


def test_method_is_an_alias_of_statistic():
    from aedr.cli import build_parser

    args = build_parser().parse_args(["score", "a.png", "--model", "m", "--method", "aedr"])
    assert args.statistic == "aedr"


def test_inversion_resize_without_the_inversion_measurement_is_refused(cli, model_file, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    result = cli("score", tmp_path / "a.png", "--model", model_file, "--inversion-resize")
    assert result.returncode == 2
    assert "inversion_resize applies only to the inversion measurement" in result.stderr


@pytest.fixture
def quick_builds(monkeypatch):
    """Built calibrations of 6 decoder-made images (the default is 40) and 16 of the 64
    negative tiles, each measured clean and at every ladder step: the same path, faster."""
    monkeypatch.setattr("aedr.library.BUILT_IMAGES", 6)
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)


TABLE_COLUMNS = ["file", "verdict", "confidence", "closest", "p-value", "caution"]


def test_zero_setup_attribute_builds_a_calibration_once_and_prints_a_table(
    cli, model_file, image_folder, tmp_path, quick_builds
):
    first = cli("attribute", image_folder, "--model", model_file, code=0)
    lines = first.stdout.splitlines()
    assert lines[0].split() == TABLE_COLUMNS and len(lines) >= 3 + 3
    assert "built from the autoencoder" in first.stdout and "false attribution:" in first.stdout
    assert "building the calibration of" in first.stderr
    again = cli("attribute", image_folder, "--model", model_file, code=0)
    assert "building" not in again.stderr and again.stdout.splitlines()[1:4] == lines[1:4]
    listed = cli("calibrations", code=0).stdout
    assert "built from the autoencoder" in listed and ".highpass." in listed
    # the records: --format jsonl on stdout is what --out writes
    out = tmp_path / "verdicts.jsonl"
    cli("attribute", image_folder, "--model", model_file, "--out", out, code=0)
    piped = cli("attribute", image_folder, "--model", model_file, "--format", "jsonl", code=0)
    written = read_jsonl(out)
    assert [json.loads(line) for line in piped.stdout.splitlines()] == written
    assert {r["calibration_origin"] for r in written} == {"built"}
    assert all(r["confidence"] for r in written)


def test_zero_setup_decides_with_an_own_calibration_measured_on_every_pixel_as_it_was_made(
    cli, model_file, image_folder, quick_builds
):
    cli("calibrate", "--model", model_file, image_folder, "--border", "0", "--add",
        "--no-default-negatives", code=0)  # fmt: skip
    run = cli("attribute", image_folder, "--model", model_file, "--format", "jsonl", code=0)
    assert "measured on every pixel (made before aedr 0.12)" in run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert {r["calibration_origin"] for r in rows} == {"own"} and "building" not in run.stderr


def test_no_candidates_is_a_set_up_error_saying_what_to_do(
    cli, image_folder, tmp_path, monkeypatch
):
    monkeypatch.setenv("AEDR_WEIGHTS_DIR", str(tmp_path))
    result = cli("attribute", image_folder, code=2)
    assert "no candidate models" in result.stderr and "--model NAME" in result.stderr


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [(["attrib", "x.png"], "did you mean attribute?"),
     (["attribute", "x.png", "--modle", "taesd"], "did you mean --model?"),
     (["score", "x.png", "--model", "m", "--devce", "cpu"], "did you mean --device?")],
)  # fmt: skip
def test_typos_get_the_nearest_command_or_option(cli, args, suggestion):
    result = cli(*args, code=2)
    assert suggestion in result.stderr


def test_calibrate_refuses_one_image_before_measuring_and_warns_below_the_stable_count(
    cli, model_file, image_folder, tmp_path
):
    single = tmp_path / "one"
    single.mkdir()
    (image_folder / "a.png").rename(single / "a.png")
    refused = cli("calibrate", single, "--model", model_file, "--out", tmp_path / "c.json", code=2)
    assert "found 1 image file" in refused.stderr and not (tmp_path / "c.json").exists()
    warned = cli("calibrate", image_folder, single, "--model", model_file, "--out",
                 tmp_path / "c.json", "--no-default-negatives", code=0)  # fmt: skip
    assert "warning: 3 images" in warned.stderr


def test_dtype_auto_measures_in_bf16_on_a_cpu_with_native_bf16(
    cli, tae_dir, image_folder, tmp_path, monkeypatch
):
    import dataclasses

    from aedr.autoencoders import devices, registry

    measured = dataclasses.replace(registry.get_spec("taesd"), cpu_bf16=True)
    monkeypatch.setitem(registry._BY_NAME, "taesd", measured)
    rows = {}
    for native in ("1", "0"):
        monkeypatch.setenv(devices.NATIVE_BF16_ENV, native)
        out = tmp_path / f"native-{native}.jsonl"
        cli("score", image_folder / "a.png", "--model", "taesd", "--weights-dir", tae_dir,
            "--out", out, "-q", code=0)  # fmt: skip
        (rows[native],) = read_jsonl(out)
    assert rows["1"]["provenance"]["dtype"] == "bf16" and rows["0"]["provenance"]["dtype"] == "fp32"
    assert rows["1"]["loss1"] != rows["0"]["loss1"]  # the store never serves bf16 to fp32
