import json
from dataclasses import asdict

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from aedr.calibration import (
    Calibration,
    CalibrationError,
    calibrate_records,
    fit_beta,
    fit_calibration,
    kde_threshold,
    records_of_model,
    signal_of_record,
)

AUTHORS_SD15_THRESHOLD = 1.0364583773111364


def reference_signals(reference_dir, result: str, glcm: str) -> np.ndarray:
    losses = np.loadtxt(reference_dir / "Result" / result)
    return losses[:, 0] / losses[:, 1] * np.loadtxt(reference_dir / "GLCM" / glcm)


def test_reproduces_authors_sd15_threshold_and_counts(reference_dir):
    own = reference_signals(reference_dir, "SD1.5_SD1.5_l2.txt", "SD1.5.txt")
    other = reference_signals(reference_dir, "SD1.5_SD2.1_l2.txt", "SD2.1.txt")
    threshold = kde_threshold(own, alpha=0.05)
    assert threshold == pytest.approx(AUTHORS_SD15_THRESHOLD, abs=1e-9)
    assert int((own < threshold).sum()) == 477
    assert int((other < threshold).sum()) == 8


def test_threshold_is_the_kde_quantile():
    rng = np.random.default_rng(1)
    signals = rng.normal(1.0, 0.1, 300)
    threshold = kde_threshold(signals, alpha=0.1)
    # the KDE's own cumulative mass below the threshold is 1 - alpha (up to grid resolution)
    kde = gaussian_kde(signals)
    assert kde.integrate_box_1d(-np.inf, threshold) == pytest.approx(0.9, abs=2e-3)
    assert kde_threshold(signals, alpha=0.01) > threshold > kde_threshold(signals, alpha=0.5)


@pytest.mark.parametrize(
    ("signals", "alpha", "message"),
    [
        ([1.0], 0.05, "at least 2"),
        ([1.0, 1.0, 1.0], 0.05, "identical"),
        ([1.0, float("nan")], 0.05, "NaN"),
        ([1.0, 2.0], 1.5, "alpha"),
    ],
)
def test_kde_threshold_rejects_bad_input(signals, alpha, message):
    with pytest.raises(CalibrationError, match=message):
        kde_threshold(signals, alpha)


def test_calibration_round_trip_and_tamper_detection(tmp_path):
    calibration = fit_calibration(
        [0.9, 1.0, 1.1, 1.05, 0.95], "taesd", 0.05, {"latent": "mode"}, "sha256:x"
    )
    path = tmp_path / "c.json"
    calibration.save(path)
    loaded = Calibration.load(path)
    assert loaded == calibration
    assert loaded.belongs(0.5) and not loaded.belongs(5.0)
    with pytest.raises(CalibrationError, match="exists"):
        calibration.save(path)

    data = json.loads(path.read_text())
    data["threshold"] = 3.0
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="does not match its own signals"):
        Calibration.load(path)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="not a JSON calibration"):
        Calibration.load(path)
    with pytest.raises(CalibrationError, match="lacks"):
        Calibration.from_dict({"model": "x"})


def test_records_of_model_handles_models_errors_and_loss_columns():
    records = [
        {"model": "a", "signal": 1.0, "error": ""},
        {"model": "a", "signal": None, "error": "bad file"},
        {"model": "b", "signal": 2.0, "error": ""},
    ]
    assert records_of_model(records, "a") == ("a", [records[0]], 1)
    with pytest.raises(CalibrationError, match="several models"):
        records_of_model(records)
    loss_rows = [{"loss1": 0.02, "loss2": 0.01, "homogeneity": 0.5}]
    assert records_of_model(loss_rows) == (None, loss_rows, 0)
    assert records_of_model([{"loss1": 0.02, "loss2": 0.0, "homogeneity": 0.5}]) == (None, [], 1)


def test_fitted_beta_cancels_the_complexity_trend():
    rng = np.random.default_rng(1)
    homogeneity = rng.uniform(0.1, 0.6, 200)
    ratio = 1.5 * homogeneity**-0.3 * np.exp(rng.normal(0, 0.02, 200))  # beta = 0.3 by design
    records = [{"loss1": r * 0.01, "loss2": 0.01, "homogeneity": h}
               for r, h in zip(ratio, homogeneity, strict=True)]  # fmt: skip
    fit = fit_beta(records)
    assert fit["beta"] == pytest.approx(0.3, abs=0.02) and fit["r2"] > 0.9
    calibration = calibrate_records(records, "m", 0.05, "fitted")
    assert calibration.beta == pytest.approx(fit["beta"]) and calibration.method == "fitted"
    statistic = calibration.statistic(records[0])
    assert statistic == pytest.approx(np.log(ratio[0]) + fit["beta"] * np.log(homogeneity[0]))
    again = Calibration.from_dict(json.loads(json.dumps(asdict(calibration))))
    assert again.beta == calibration.beta and again.statistic(records[0]) == statistic
    with pytest.raises(CalibrationError, match="needs a beta"):
        signal_of_record(records[0], "fitted")


def test_signal_of_record_per_method():
    from aedr.calibration import signal_of_record

    record = {"loss1": 0.02, "loss2": 0.01, "homogeneity": 0.5, "signal": 1.0}
    assert signal_of_record(record) == pytest.approx(1.0)
    assert signal_of_record(record, "ratio") == pytest.approx(2.0)
    assert signal_of_record(record, "single-loss") == pytest.approx(0.02)
    with pytest.raises(CalibrationError, match="--method latenttracer"):
        signal_of_record(record, "latenttracer")
    assert signal_of_record({"loss1": 0.3, "loss2": None}, "latenttracer") == 0.3
    with pytest.raises(CalibrationError, match="unknown method"):
        signal_of_record(record, "magic")


def test_alpha_auto_maximises_tuning_accuracy():
    from aedr.calibration import choose_alpha

    rng = np.random.default_rng(0)
    positives = rng.normal(1.0, 0.1, 200)
    far = rng.normal(3.0, 0.1, 200)
    alpha, accuracy = choose_alpha(positives, far)
    assert alpha == 0.001 and accuracy > 0.99  # far negatives: accept nearly all positives
    near = rng.normal(1.15, 0.1, 200)  # overlapping negatives push alpha up
    alpha_near, accuracy_near = choose_alpha(positives, near)
    assert alpha_near > alpha and accuracy_near < accuracy
    with pytest.raises(CalibrationError, match="alpha auto needs"):
        choose_alpha(positives, [])
