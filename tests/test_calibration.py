import json

import numpy as np
import pytest
from conftest import TEST_PROVENANCE, loss_record
from scipy.stats import gaussian_kde

from aedr.decide.calibration import (
    Calibration,
    CalibrationError,
    calibrate,
    choose_alpha,
    fit_chain_thresholds,
    fit_enlargement_thresholds,
    fit_grey_thresholds,
    fit_jpeg_thresholds,
    fit_size_thresholds,
    kde_threshold,
    provenance_of_records,
    record_enlargement,
    record_grey,
    record_jpeg_quality,
    records_of_model,
)
from aedr.measure.provenance import Provenance
from aedr.measure.settings import ScoreSettings
from aedr.records import OutputExistsError
from aedr.schemas import MAX_SIGNALS

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
        ([0.1] * 6, 0.05, "identical"),  # a std of 1.5e-17: gaussian_kde raised LinAlgError
        ([1.0, float("nan")], 0.05, "NaN"),
        ([1.0, 2.0], 1.5, "alpha"),
    ],
)
def test_kde_threshold_rejects_bad_input(signals, alpha, message):
    with pytest.raises(CalibrationError, match=message):
        kde_threshold(signals, alpha)


def own_records(n: int = 40, beta: float = 0.3, seed: int = 1) -> list[dict]:
    """Records whose log ratio trends with log H by -beta (so fitted's beta should find it)."""
    rng = np.random.default_rng(seed)
    homogeneity = rng.uniform(0.1, 0.6, n)
    ratio = 1.5 * homogeneity**-beta * np.exp(rng.normal(0, 0.02, n))
    return [loss_record(r * 0.01, 0.01, h) for r, h in zip(ratio, homogeneity, strict=True)]


def test_calibrate_keeps_the_records_provenance_and_round_trips(tmp_path):
    calibration = calibrate(own_records(), "taesd", 0.05, "aedr")
    assert calibration.provenance == TEST_PROVENANCE and not calibration.provenance_assumed
    path = tmp_path / "c.json"
    calibration.save(path)
    loaded = Calibration.load(path)
    assert loaded == calibration
    assert loaded.belongs(0.5) and not loaded.belongs(5.0)
    assert not loaded.belongs(0.5, "mostly flat"), "too little evidence accepts at no signal"
    with pytest.raises(OutputExistsError, match="exists"):
        calibration.save(path)


def test_a_failed_overwrite_keeps_the_old_calibration_whole(tmp_path, monkeypatch):
    """A full disk while writing (simulated after part of the file is out) is an error, and the
    calibration that was there is still there, byte for byte, with no temporary file left."""
    import errno
    import json as json_module

    path = tmp_path / "c.json"
    calibrate(own_records(), "taesd", 0.05, "aedr").save(path)
    before = path.read_bytes()

    def full_disk(value, stream, **options):
        stream.write('{"format": 2, "model": "tae')
        stream.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json_module, "dump", full_disk)
    newer = calibrate(own_records(), "taesd", 0.1, "aedr")
    with pytest.raises(CalibrationError, match="No space left"):
        newer.save(path, overwrite=True)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"threshold": 3.0}, "do not match its digest"),
        ({"model": "taesdxl"}, "do not match its digest"),
        ({"provenance": {**TEST_PROVENANCE, "identity": "sha256:other"}}, "digest"),
        ({"format": 1}, "format 1"),
        ({"digest": ""}, "digest"),
    ],
)
def test_edited_calibrations_are_refused(tmp_path, edit, message):
    path = tmp_path / "c.json"
    calibrate(own_records(), "taesd", 0.05, "aedr").save(path)
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(CalibrationError, match=message):
        Calibration.load(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("signals", "abc", "signals: Input should be a valid list"),
        ("alpha", "x", "alpha: Input should be a valid number"),
        ("alpha", 1.5, "alpha: Input should be less than 1"),
        ("statistic", "bogus", "statistic: Input should be 'fitted'"),
        ("provenance", [], "provenance: Input should be a valid dictionary"),
        ("threshold", float("nan"), "threshold: Input should be a finite number"),
        ("n", 3, "n is 3 but there are 40 signals"),
    ],
)
def test_malformed_fields_are_refused_even_with_a_matching_digest(field, value, message):
    calibration = calibrate(own_records(), "taesd", 0.05, "aedr")
    setattr(calibration, field, value)
    data = calibration.as_dict()
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_dict(data)


def test_unreadable_and_oversized_calibrations(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="not a JSON calibration"):
        Calibration.load(path)
    with pytest.raises(CalibrationError, match="is not a calibration"):
        Calibration.from_dict([1, 2])
    calibration = calibrate(own_records(), "taesd", 0.05, "aedr")
    calibration.signals = [1.0] * (MAX_SIGNALS + 1)
    data = calibration.as_dict()
    with pytest.raises(CalibrationError, match="List should have at most 1000000 items"):
        Calibration.from_dict(data)


def test_records_of_model_handles_models_errors_and_loss_columns():
    records = [
        loss_record(0.02, 0.01, 0.5, model="a"),
        loss_record(None, None, None, model="a", error="bad file"),
        loss_record(0.03, 0.01, 0.5, model="b"),
    ]
    assert records_of_model(records, "a", "aedr") == ("a", [records[0]], 1)
    with pytest.raises(CalibrationError, match="several models"):
        records_of_model(records, statistic="aedr")
    loss_rows = [{"loss1": 0.02, "loss2": 0.01, "homogeneity": 0.5}]  # the authors' columns
    assert records_of_model(loss_rows, statistic="aedr") == (None, loss_rows, 0)
    flat = [{"loss1": 0.02, "loss2": 0.0, "homogeneity": 0.5}]
    with pytest.raises(
        CalibrationError, match=r"aedr can read none of the 1 records \(loss2 is zero"
    ):
        records_of_model(flat, statistic="aedr")
    exact = [{"loss1": 0.0, "loss2": 0.01, "homogeneity": 0.5}]  # loss1 = 0: log undefined
    assert records_of_model(exact + loss_rows, statistic="fitted") == (None, loss_rows, 1)
    with pytest.raises(CalibrationError, match=r"none of the 1 records .loss1 is zero"):
        records_of_model(exact, statistic="fitted")
    assert records_of_model(exact, statistic="ratio") == (None, exact, 0)


def test_provenance_is_read_from_records_and_mixed_provenance_is_refused():
    records = own_records(6)
    assert provenance_of_records(records) == (Provenance.from_dict(TEST_PROVENANCE), False)
    bf16 = {**records[0], "provenance": {**TEST_PROVENANCE, "dtype": "bf16"}}
    with pytest.raises(CalibrationError, match=r"mixed provenance.*dtype: 'fp32' vs 'bf16'"):
        calibrate([*records, bf16], "taesd", 0.05, "aedr")
    bare = [{k: v for k, v in r.items() if k != "provenance"} for r in records]
    with pytest.raises(CalibrationError, match="carry no provenance"):
        calibrate(bare, "taesd", 0.05, "aedr")
    assumed = Provenance("unverified", ScoreSettings(latent="sample", seed=1, alignment="resize"))
    calibration = calibrate(bare, "taesd", 0.05, "aedr", assumed_provenance=assumed)
    assert calibration.provenance_assumed and calibration.provenance["latent"] == "sample"
    with pytest.raises(CalibrationError, match="some records carry a provenance"):
        calibrate([*bare, records[0]], "taesd", 0.05, "aedr", assumed_provenance=assumed)


def test_applying_a_calibration_checks_provenance_naming_the_difference():
    calibration = calibrate(own_records(), "taesd", 0.05, "aedr")
    same = Provenance.from_dict(TEST_PROVENANCE)
    calibration.check_provenance(same)
    newer = Provenance.from_dict({**TEST_PROVENANCE, "aedr_version": "9.9"})
    calibration.check_provenance(newer)  # a release that changed nothing else still applies
    remeasured = Provenance.from_dict({**TEST_PROVENANCE, "measurement_version": 9})
    calibration.check_provenance(remeasured)  # a calibration outlives a measurement version
    for field, value in (("dtype", "bf16"), ("device", "cuda"), ("latent", "sample"),
                         ("identity", "sha256:other")):  # fmt: skip
        run = Provenance.from_dict({**TEST_PROVENANCE, field: value})
        with pytest.raises(CalibrationError, match=f"{field}: "):
            calibration.check_provenance(run)


def test_fitted_beta_cancels_the_complexity_trend():
    records = own_records(200)
    calibration = calibrate(records, "m", 0.05, "fitted")
    beta = calibration.parameters["beta"]
    assert beta == pytest.approx(0.3, abs=0.02) and calibration.parameters["r2"] > 0.9
    record = records[0]
    expected = np.log(record["loss1"] / record["loss2"]) + beta * np.log(record["homogeneity"])
    assert calibration.value(record) == pytest.approx(expected)
    again = Calibration.from_dict(json.loads(json.dumps(calibration.as_dict())))
    assert again.parameters == calibration.parameters and again.value(record) == pytest.approx(
        expected
    )


def test_p_value_exceeds_alpha_exactly_below_the_threshold_up_to_half_a_grid_step():
    calibration = calibrate(own_records(200), "m", 0.05, "aedr")
    values = np.asarray(calibration.signals)
    step = (values.max() - values.min() + 2 * values.std(ddof=1)) / (10_000 - 1)
    for offset in (-5 * step, -step, step, 5 * step):
        signal = calibration.threshold + offset
        assert (calibration.p_value(signal) > calibration.alpha) == calibration.belongs(signal)


def test_alpha_auto_maximises_tuning_accuracy():
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


def _jpeg_records(center: float, n: int = 30, seed: int = 0, **provenance) -> list[dict]:
    """Records whose ratio statistic spreads around ``center``."""
    ratios = np.random.default_rng(seed).normal(center, 0.05, n)
    return [loss_record(float(r), 1.0, 0.5, provenance={**TEST_PROVENANCE, **provenance})
            for r in ratios]  # fmt: skip


def test_jpeg_thresholds_apply_at_the_nearest_quality_and_survive_a_round_trip(tmp_path):
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    fitted = fit_jpeg_thresholds(
        clean, {90: _jpeg_records(1.5, seed=1), 70: _jpeg_records(2.0, seed=2)},
        {70: _jpeg_records(3.0, n=10, seed=3)}, ["photos"],
    )  # fmt: skip
    assert fitted.jpeg_qualities == (70, 90) and not clean.jpeg
    high, low = fitted.at_jpeg_quality(95), fitted.at_jpeg_quality(50)
    assert high.threshold == pytest.approx(kde_threshold(high.signals, 0.05))
    assert high.threshold > clean.threshold + 0.3 and low.threshold > high.threshold + 0.3
    assert fitted.at_jpeg_quality(80).tuning["jpeg_quality"] == 70  # a tie goes to the lower
    assert fitted.at_jpeg_quality(None) is fitted and clean.at_jpeg_quality(75) is clean
    assert not high.negatives and low.negatives["n"] == 10 and low.false_acceptance == 0.0
    assert "re-encoded at JPEG quality 70" in low.negatives["sources"][0]
    fitted.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json")
    assert loaded.at_jpeg_quality(75).threshold == low.threshold
    # a calibration without JPEG thresholds keeps the content (and digest) it had before
    assert "jpeg" not in clean.as_dict() and "jpeg" in loaded.as_dict()


def test_jpeg_thresholds_accept_no_more_of_their_negatives_than_the_clean_calibration():
    """Recompressed photos move towards a model's recompressed images: a JPEG threshold that
    follows its own images alone would attribute them (measured: docs/results/zero-setup.md)."""
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_jpeg_records(3.0, n=40, seed=4), negative_sources=["photos"])  # fmt: skip
    assert clean.false_acceptance == 0.0 and clean.false_acceptance_limit == 0.05
    overlapping = _jpeg_records(2.0, n=40, seed=5)  # the JPEG negatives, among own JPEG signals
    fitted = fit_jpeg_thresholds(clean, {70: _jpeg_records(2.0, seed=2)}, {70: overlapping})
    view = fitted.at_jpeg_quality(70)
    uncapped = kde_threshold(view.signals, 0.05)
    assert view.threshold < uncapped
    assert view.false_acceptance == 2 / 40  # floor(0.05 x 40) of them, no more
    far = fit_jpeg_thresholds(clean, {70: _jpeg_records(2.0, seed=2)},
                              {70: _jpeg_records(4.0, n=40, seed=5)}).at_jpeg_quality(70)  # fmt: skip
    assert far.threshold == pytest.approx(uncapped)  # the cap binds only where it must


def test_jpeg_thresholds_may_read_another_statistic_and_decide_jpegs_by_it(tmp_path):
    """``highpass`` for clean files, ``ac`` (what survives recompression) for JPEG files: the
    view of a JPEG quality reads and judges the statistic its threshold was fitted on."""
    clean = calibrate([{**r, "highpass_log_ratio": 0.3 + i / 100, "ac_log_ratio": 9.0}
                       for i, r in enumerate(_jpeg_records(1.0, n=10))], "m", 0.05, "highpass")  # fmt: skip
    jpeg = [{**r, "highpass_log_ratio": 5.0 + i / 100, "ac_log_ratio": 0.1 + i / 100}
            for i, r in enumerate(_jpeg_records(1.5, n=10, seed=1))]  # fmt: skip
    fitted = fit_jpeg_thresholds(clean, {75: jpeg}, statistic="ac")
    view = fitted.at_jpeg_quality(70)
    assert view.statistic == "ac" and fitted.statistic == "highpass"
    assert view.signals == [r["ac_log_ratio"] for r in jpeg] and 0.15 < view.threshold < 0.3
    assert view.belongs(view.value(jpeg[0])) and not fitted.belongs(fitted.value(jpeg[0]))
    fitted.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json").at_jpeg_quality(75).statistic == "ac"
    same = fit_jpeg_thresholds(clean, {75: jpeg}, statistic="highpass")
    assert "statistic" not in same.jpeg["75"] and same.at_jpeg_quality(75).statistic == "highpass"
    with pytest.raises(CalibrationError, match="JPEG thresholds on latenttracer need inversion"):
        fit_jpeg_thresholds(clean, {75: jpeg}, statistic="latenttracer")


def test_jpeg_thresholds_refuse_measurements_made_another_way():
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    with pytest.raises(CalibrationError, match="robust: 'off' vs 'auto'"):
        fit_jpeg_thresholds(clean, {75: _jpeg_records(1.5, robust="auto")})
    with pytest.raises(CalibrationError, match=r"1 usable measurements .* quality 75"):
        fit_jpeg_thresholds(clean, {75: _jpeg_records(1.5, n=1)})
    with pytest.raises(CalibrationError, match="from 1 to 100"):
        fit_jpeg_thresholds(clean, {0: _jpeg_records(1.5)})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"0": None}, "jpeg"),  # a quality outside 1..100
        ({"75": {"n": 3}}, "n is 3"),
    ],
)
def test_malformed_jpeg_thresholds_are_refused(edit, message):
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    data = fit_jpeg_thresholds(clean, {75: _jpeg_records(1.5)}).as_dict()
    for key, change in edit.items():
        if change is None:
            data["jpeg"][key] = data["jpeg"]["75"]
        else:
            data["jpeg"][key].update(change)
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_dict(data)


def test_record_jpeg_quality_reads_ints_and_csv_cells():
    assert [record_jpeg_quality({"jpeg_quality": v}) for v in (75, "75", "", None, "x")] == [
        75, 75, None, None, None,
    ]  # fmt: skip
    assert record_jpeg_quality({}) is None


def test_smaller_images_are_decided_at_thresholds_interpolated_towards_their_crops(tmp_path):
    """Own images of 256 px score around 1.0, their 128 px centre crops around 2.0: an image
    of 128 px or less takes the crops' threshold, one of 181 px (halfway on a log scale) one
    halfway between, one of 256 px or more the calibration's own."""
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    crops = _jpeg_records(2.0, seed=1)
    fitted = fit_size_thresholds(clean, {128: crops}, 256)
    small, middle = fitted.at_size(100), fitted.at_size(181)
    assert fitted.at_size(256) is fitted and fitted.at_size(900) is fitted
    assert fitted.at_size(None) is fitted and clean.at_size(128) is clean
    assert small.tuning["size_side"] == 128 and small is fitted.at_size(128)
    assert small.threshold == pytest.approx(kde_threshold([r["loss1"] for r in crops], 0.05))
    assert middle.tuning["size_side"] == 184  # the side on the 8-pixel grid
    halfway = (clean.threshold + small.threshold) / 2
    assert middle.threshold == pytest.approx(halfway, abs=0.05)
    assert clean.threshold + 0.8 < small.threshold and small.negatives == clean.negatives
    fitted.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json")
    assert loaded.at_size(128).threshold == pytest.approx(small.threshold)
    assert "sizes" not in clean.as_dict()  # the content (and digest) of calibrations without
    with pytest.raises(CalibrationError, match="not smaller"):
        fit_size_thresholds(clean, {256: crops}, 256)


def test_candidate_thresholds_take_each_images_size_and_jpegs_their_quality():
    from aedr.decide.attribution import CandidateThresholds

    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    sized = fit_size_thresholds(clean, {128: _jpeg_records(2.0, seed=1)}, 256)
    both = fit_jpeg_thresholds(sized, {75: _jpeg_records(1.5, seed=2)})
    thresholds = CandidateThresholds([both])
    assert thresholds.at(None, 128)[0]["m"].tuning["size_side"] == 128
    assert thresholds.at(None, 256)[0]["m"].threshold == both.threshold
    jpeg = thresholds.at(75, 128)[0]["m"]  # a JPEG takes its quality's threshold
    assert jpeg.tuning["jpeg_quality"] == 75 and "size_side" not in jpeg.tuning
    plain = CandidateThresholds([sized]).at(75, 128)[0]["m"]  # no JPEG thresholds: its size's
    assert plain.tuning["size_side"] == 128


def test_a_smaller_images_threshold_attributes_no_more_negatives_than_the_calibration():
    negatives = _jpeg_records(1.9, n=40, seed=5)  # photos that score near the crops
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio", negatives=negatives,
                      negative_sources=["photos"])  # fmt: skip
    assert clean.false_acceptance == 0.0
    fitted = fit_size_thresholds(clean, {128: _jpeg_records(2.0, seed=1)}, 256)
    small = fitted.at_size(128)
    uncapped = kde_threshold(fitted.sizes["crops"]["128"]["signals"], 0.05)
    assert small.threshold < uncapped  # capped: the crops' own threshold accepts many photos
    assert small.false_acceptance <= 0.05 and clean.false_acceptance <= 0.05
    assert np.mean(clean.negative_signals < uncapped) > 0.5


def _enlarged_records(center: float, factor: float, found: bool = True, **options) -> list[dict]:
    """``_jpeg_records`` of images enlarged by ``factor``, the enlargement found (and undone)."""
    trace = {"resized_by": factor, "enlargement_strength": 20.0} if found else {}
    return [{**r, "degradation": trace} for r in _jpeg_records(center, **options)]


def test_enlargement_thresholds_apply_at_the_nearest_factor_on_a_log_scale_and_round_trip(
    tmp_path,
):
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    fitted = fit_enlargement_thresholds(
        clean, {1.5: _enlarged_records(1.5, 1.5, seed=1), 2.0: _enlarged_records(2.0, 2.0, seed=2)}
    )
    assert fitted.enlargement_factors == (1.5, 2.0) and not clean.enlargements
    assert fitted.at_enlargement(1.2) is fitted  # nearer 1 than 1.5 on a log scale: clean
    at_15, at_2 = fitted.at_enlargement(1.3), fitted.at_enlargement(1.8)
    assert at_15.tuning["enlargement"] == 1.5 and at_2.tuning["enlargement"] == 2.0
    assert fitted.threshold < at_15.threshold < at_2.threshold
    assert at_15.signals == fitted.enlargements["1.5"]["signals"] and at_15.n == 30
    assert fitted.at_enlargement(3.0) is at_2 and fitted.at_enlargement(None) is fitted
    assert fitted.at_enlargement(1.5) is at_15  # each view made once
    fitted.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json")
    assert loaded.at_enlargement(1.6).threshold == at_15.threshold
    assert "enlargements" not in clean.as_dict() and "enlargements" in loaded.as_dict()


def test_enlargement_thresholds_fit_only_images_whose_enlargement_was_found():
    """An enlarged image whose enlargement is not found is measured, and decided, as it is (at
    the clean thresholds): the enlargement's thresholds are fitted on the others alone."""
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    mixed = _enlarged_records(1.5, 1.5, n=10, seed=1) + _enlarged_records(9.0, 1.5, False, n=5)
    fitted = fit_enlargement_thresholds(clean, {1.5: mixed})
    assert fitted.enlargements["1.5"]["n"] == 10 and max(fitted.at_enlargement(1.5).signals) < 2
    with pytest.raises(CalibrationError, match="1 usable measurements of the images enlarged x2"):
        fit_enlargement_thresholds(
            clean, {2.0: _enlarged_records(2.0, 2.0, n=1) + _enlarged_records(2.0, 2.0, False)}
        )
    with pytest.raises(CalibrationError, match="made differently"):
        fit_enlargement_thresholds(clean, {1.5: _enlarged_records(1.5, 1.5, robust="auto")})
    for factors in ([3.0], [1.0], [1.23456]):
        with pytest.raises(CalibrationError, match="enlargement factors are distinct"):
            fit_enlargement_thresholds(clean, {f: _enlarged_records(1.5, f) for f in factors})


def test_enlargement_thresholds_accept_no_more_of_their_negatives_than_the_clean_calibration():
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_jpeg_records(3.0, n=40, seed=4), negative_sources=["photos"])  # fmt: skip
    overlapping = _enlarged_records(1.5, 1.5, n=40, seed=5)  # among the own enlarged signals
    fitted = fit_enlargement_thresholds(
        clean, {1.5: _enlarged_records(1.5, 1.5, seed=1)}, {1.5: {"bicubic": overlapping}},
        ["photos"],
    )  # fmt: skip
    view = fitted.at_enlargement(1.5)
    assert view.negatives["n"] == 40 and view.negatives["sources"] == ["photos, enlarged x1.5"]
    assert view.false_acceptance <= clean.false_acceptance_limit
    assert view.threshold < kde_threshold(view.signals, 0.05)  # capped by the negatives


def test_enlargement_thresholds_are_capped_on_each_filter_s_negatives():
    """Negatives enlarged with one filter that score far away must not make room for those of
    another filter among the own images: pooled, 3 of 40 accepted would be within 0.05 of 80."""
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_jpeg_records(3.0, n=40, seed=4), negative_sources=["photos"])  # fmt: skip
    own = _enlarged_records(1.5, 1.5, seed=1)
    far = _enlarged_records(9.0, 1.5, n=40, seed=6)
    near = _enlarged_records(1.8, 1.5, n=40, seed=7)  # above the own images' threshold...
    near[:3] = [{**r, "loss1": 1.45} for r in near[:3]]  # ...but 3 among their signals
    view = fit_enlargement_thresholds(
        clean, {1.5: own}, {1.5: {"bicubic": far, "bilinear": near}}, ["photos"]
    ).at_enlargement(1.5)
    accepted = [v < view.threshold for v in view.negatives["signals"][40:]]
    assert view.negatives["n"] == 80 and sum(accepted) <= 2  # floor(0.05 * 40) of the bilinear
    pooled = fit_enlargement_thresholds(clean, {1.5: own}, {1.5: {"both": far + near}})
    assert pooled.at_enlargement(1.5).threshold > view.threshold


@pytest.mark.parametrize("key", ["3", "1.0", "1.23456", "x"])
def test_malformed_enlargement_thresholds_are_refused(key):
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    data = fit_enlargement_thresholds(clean, {1.5: _enlarged_records(1.5, 1.5)}).as_dict()
    data["enlargements"][key] = data["enlargements"].pop("1.5")
    with pytest.raises(CalibrationError, match="enlargements"):
        Calibration.from_dict(data)


def test_record_enlargement_reads_only_an_enlargement_found():
    found = {"degradation": {"resized_by": 1.5, "enlargement_strength": 12.0}}
    stated = {"degradation": {"resized_by": 1.5}}  # --resized-by: the calibration's own factor
    assert record_enlargement(found) == 1.5
    assert [record_enlargement(r) for r in (stated, {}, {"degradation": "x1.5"})] == [None] * 3


def test_candidate_thresholds_take_a_jpegs_quality_then_an_enlargement_then_the_size():
    from aedr.decide.attribution import CandidateThresholds

    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    sized = fit_size_thresholds(clean, {128: _jpeg_records(2.0, seed=1)}, 256)
    enlarged = fit_enlargement_thresholds(sized, {1.5: _enlarged_records(1.5, 1.5, seed=2)})
    both = fit_jpeg_thresholds(enlarged, {75: _jpeg_records(1.7, seed=3)})
    thresholds = CandidateThresholds([both])
    assert thresholds.at(75, 256, 1.5)[0]["m"].tuning["jpeg_quality"] == 75
    assert thresholds.at(None, 256, 1.5)[0]["m"].tuning["enlargement"] == 1.5
    assert thresholds.at(None, 128, 1.1)[0]["m"].tuning["size_side"] == 128  # x1.1: not 1.5's
    record = {"width": 256, "height": 256, **_enlarged_records(1.5, 1.5, n=1)[0]}
    assert thresholds.for_record(record)[0]["m"].tuning["enlargement"] == 1.5
    jpeg_only = CandidateThresholds([fit_jpeg_thresholds(sized, {75: _jpeg_records(1.7)})])
    assert "enlargement" not in jpeg_only.at(None, 256, 1.5)[0]["m"].tuning  # none fitted


def _chained_records(center: float, factor: float, quality: int, **options) -> list[dict]:
    """``_enlarged_records`` of images enlarged by ``factor``, then saved as JPEG ``quality``."""
    found = _enlarged_records(center, factor, **options)
    return [{**r, "jpeg_quality": quality} for r in found]


def test_chain_thresholds_apply_at_the_nearest_factor_then_quality_and_round_trip(tmp_path):
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    chains = {(1.5, 85): _chained_records(2.0, 1.5, 85, seed=1),
              (1.5, 70): _chained_records(2.5, 1.5, 70, seed=2)}  # fmt: skip
    fitted = fit_chain_thresholds(clean, chains)
    assert fitted.chain_steps == ((1.5, 70), (1.5, 85)) and not clean.chains
    at_85, at_70 = fitted.at_chain(1.4, 90), fitted.at_chain(1.7, 75)  # 75: nearer 70 than 85
    assert at_85.tuning == {"enlargement": 1.5, "jpeg_quality": 85}
    assert at_70.tuning == {"enlargement": 1.5, "jpeg_quality": 70}
    assert fitted.threshold < at_85.threshold < at_70.threshold
    assert at_85.signals == fitted.chains["1.5"]["85"]["signals"] and at_85.n == 30
    assert fitted.at_chain(1.2, 85) is fitted  # nearer x1 than x1.5: no chain
    assert fitted.at_chain(None, 85) is fitted and fitted.at_chain(1.5, None) is fitted
    assert fitted.at_chain(1.5, 85) is at_85 and not at_85.chains  # each view made once
    fitted.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json")
    assert loaded.at_chain(1.5, 80).threshold == at_85.threshold
    assert "chains" not in clean.as_dict() and "chains" in loaded.as_dict()
    with pytest.raises(CalibrationError, match="1 usable measurements of the images enlarged"):
        unfound = _chained_records(2.0, 1.5, 85, n=1) + [
            {**r, "degradation": {}} for r in _chained_records(2.0, 1.5, 85, seed=3)
        ]  # fmt: skip
        fit_chain_thresholds(clean, {(1.5, 85): unfound})  # only enlargements found count
    with pytest.raises(CalibrationError, match="enlargement factors are distinct"):
        fit_chain_thresholds(clean, {(3.0, 85): _chained_records(2.0, 3.0, 85)})
    data = fitted.as_dict()
    data["chains"]["1.5"]["0"] = data["chains"]["1.5"].pop("85")
    with pytest.raises(CalibrationError, match="chains"):
        Calibration.from_dict(data)


def test_chain_thresholds_are_capped_on_each_filter_s_negatives_in_colour():
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_jpeg_records(3.0, n=40, seed=4), negative_sources=["photos"])  # fmt: skip
    own = _chained_records(2.0, 1.5, 85, seed=1)
    far = _chained_records(9.0, 1.5, 85, n=40, seed=6)
    near = _chained_records(2.3, 1.5, 85, n=40, seed=7)  # above the own images' threshold...
    near[:3] = [{**r, "loss1": 1.95} for r in near[:3]]  # ...but 3 among their signals
    grey = [{**r, "grey": True} for r in _chained_records(1.0, 1.5, 85, n=40, seed=8)]
    negatives = {(1.5, 85): {"bicubic": far + grey, "bilinear": near}}
    view = fit_chain_thresholds(clean, {(1.5, 85): own}, negatives, ["photos"]).at_chain(1.5, 85)
    assert view.negatives["sources"] == [
        "photos, enlarged x1.5, then re-encoded at JPEG quality 85"
    ]
    accepted = [v < view.threshold for v in view.negatives["signals"][80:]]
    assert view.negatives["n"] == 120 and sum(accepted) <= 2  # floor(0.05 * 40) of the bilinear
    assert view.threshold > 1.0  # the grey negatives, far below, cap nothing


def test_candidate_thresholds_take_a_jpeg_found_enlarged_at_its_chain():
    from aedr.decide.attribution import CandidateThresholds

    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    enlarged = fit_enlargement_thresholds(clean, {1.5: _enlarged_records(1.5, 1.5, seed=2)})
    jpeg = fit_jpeg_thresholds(enlarged, {85: _jpeg_records(1.7, seed=3)})
    chained = fit_chain_thresholds(jpeg, {(1.5, 85): _chained_records(2.2, 1.5, 85, seed=4)})
    thresholds = CandidateThresholds([chained])
    view = thresholds.at(85, 256, 1.5)[0]["m"]
    assert view.tuning == {"enlargement": 1.5, "jpeg_quality": 85}
    assert view.threshold == chained.at_chain(1.5, 85).threshold
    assert thresholds.at(85, 256, None)[0]["m"].tuning == {"jpeg_quality": 85}
    assert thresholds.at(85, 256, 1.1)[0]["m"].tuning == {"jpeg_quality": 85}  # x1.1: no chain
    assert thresholds.at(None, 256, 1.5)[0]["m"].tuning == {"enlargement": 1.5}
    record = {"width": 256, "height": 256, **_chained_records(2.0, 1.5, 85, n=1)[0]}
    assert thresholds.for_record(record)[0]["m"] is view
    without = CandidateThresholds([jpeg]).at(85, 256, 1.5)[0]["m"]  # older: its quality's
    assert without.tuning == {"jpeg_quality": 85}


def _grey_records(center: float, **options) -> list[dict]:
    """``_jpeg_records`` of grey images (``Measurement.grey``)."""
    return [{**r, "grey": True} for r in _jpeg_records(center, **options)]


def test_grey_thresholds_accept_at_most_alpha_of_the_grey_negatives_and_round_trip(tmp_path):
    """The cap is alpha, not the calibration's own false acceptance: that counts the grey
    negatives among the rest, so it is high exactly where grey photos pass (here 0.5)."""
    negatives = _jpeg_records(3.0, n=20, seed=4) + _jpeg_records(1.0, n=20, seed=8)
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio", negatives=negatives,
                      negative_sources=["photos"])  # fmt: skip
    assert clean.false_acceptance_limit >= 0.4
    grey_negatives = _grey_records(1.4, n=40, seed=5)  # among the own grey images' signals
    fitted = fit_grey_thresholds(clean, _grey_records(1.5, seed=1), grey_negatives, ["photos"])
    view = fitted.at_grey(True)
    assert view.tuning == {"grey": True} and view.n == 30 and not clean.grey
    assert view.negatives["sources"] == ["photos, made grey"] and view.negatives["n"] == 40
    assert (
        view.false_acceptance
        <= 0.05
        < np.mean(view.negative_signals < kde_threshold(view.signals, 0.05))
    )
    assert (
        fitted.at_grey(False) is fitted
        and fitted.at_grey(True) is view
        and clean.at_grey(True) is clean
    )
    fitted.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json")
    assert loaded.at_grey(True).threshold == view.threshold
    assert "grey" not in clean.as_dict() and "grey" in loaded.as_dict()


def test_grey_thresholds_fit_grey_records_only_and_need_grey_negatives():
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    mixed = _grey_records(1.5, n=10, seed=1) + _jpeg_records(9.0, n=5)  # 5 not grey: left out
    fitted = fit_grey_thresholds(clean, mixed, _grey_records(3.0, n=10, seed=2), ["photos"])
    assert fitted.grey["n"] == 10 and max(fitted.grey["signals"]) < 2
    with pytest.raises(CalibrationError, match="need negatives made grey"):
        fit_grey_thresholds(clean, mixed, _jpeg_records(3.0, n=10), ["photos"])
    with pytest.raises(CalibrationError, match="1 usable measurements of the images made grey"):
        fit_grey_thresholds(clean, _grey_records(1.5, n=1), _grey_records(3.0, n=10))


def test_record_grey_reads_a_bool_or_its_text():
    assert [record_grey({"grey": v}) for v in (True, "True", " true", False, "False", "", None)] == [
        True, True, True, False, False, False, False
    ]  # fmt: skip
    assert record_grey({}) is False


def test_candidate_thresholds_take_a_grey_images_thresholds_before_all_else():
    from aedr.decide.attribution import CandidateThresholds

    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio")
    enlarged = fit_enlargement_thresholds(clean, {1.5: _enlarged_records(1.5, 1.5, seed=2)})
    jpeg = fit_jpeg_thresholds(enlarged, {75: _jpeg_records(1.7, seed=3)})
    both = fit_grey_thresholds(jpeg, _grey_records(0.8, seed=4), _grey_records(3.0, n=10))
    thresholds = CandidateThresholds([both])
    assert thresholds.at(75, 256, 1.5, grey=True)[0]["m"].tuning == {"grey": True}
    assert thresholds.at(75, 256, 1.5)[0]["m"].tuning == {"jpeg_quality": 75}
    record = {"width": 256, "height": 256, **_grey_records(1.0, n=1)[0]}
    assert thresholds.for_record(record)[0]["m"].tuning == {"grey": True}
    assert CandidateThresholds([jpeg]).for_record(record)[0]["m"] is jpeg  # none fitted: clean


def _mixed_negatives(colour: float, grey: float, n: int = 20) -> list[dict]:
    """``n`` negatives in colour around ``colour`` and ``n`` grey ones around ``grey``."""
    return _jpeg_records(colour, n=n, seed=6) + _grey_records(grey, n=n, seed=7)


def test_a_calibration_counts_its_grey_negatives_and_those_in_colour_apart():
    """Grey negatives are accepted far more often (a decoder reconstructs grey pixels well):
    counted with the rest they would overstate the rate for a colour image."""
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_mixed_negatives(3.0, 1.0), negative_sources=["photos"])  # fmt: skip
    assert clean.negatives["grey"] == [False] * 20 + [True] * 20
    colour, grey = clean.negatives_like(False), clean.negatives_like(True)
    assert colour.negatives["n"] == grey.negatives["n"] == 20
    assert colour.false_acceptance == 0.0 < 0.3 < grey.false_acceptance
    assert colour.false_acceptance_limit == 0.05 < clean.false_acceptance_limit
    assert colour.negatives["sources"] == ["photos, those in colour"]
    assert clean.negatives_like(False) is colour and colour.threshold == clean.threshold
    plain = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio", negatives=_jpeg_records(3.0, n=5))
    assert "grey" not in plain.negatives and plain.negatives_like(False) is plain


def test_enlargement_thresholds_are_capped_on_every_negative_whatever_its_kind():
    """Capped on the negatives in colour alone, the thresholds for enlarged images attributed
    more photos (docs/results/zero-setup.md#negatives-like-the-image): the kinds are told apart
    for what is stated, not for their caps."""
    untold = _enlarged_records(2.0, 1.5, n=20, seed=6) + [
        {**r, "grey": False} for r in _enlarged_records(0.5, 1.5, n=20, seed=7)
    ]  # fmt: skip
    told = _enlarged_records(2.0, 1.5, n=20, seed=6) + [
        {**r, "grey": True} for r in _enlarged_records(0.5, 1.5, n=20, seed=7)
    ]  # fmt: skip
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_mixed_negatives(3.0, 3.0), negative_sources=["photos"])  # fmt: skip
    own = {1.5: _enlarged_records(2.0, 1.5, seed=2)}
    fitted = [fit_enlargement_thresholds(clean, own, {1.5: {"bicubic": negatives}})
              .at_enlargement(1.5) for negatives in (told, untold)]  # fmt: skip
    assert "grey" in fitted[0].negatives and "grey" not in fitted[1].negatives
    assert fitted[0].threshold == fitted[1].threshold < kde_threshold(fitted[0].signals, 0.05)
    assert fitted[0].negatives_like(False).false_acceptance == 0.0  # below the colour ones


def test_jpeg_thresholds_are_capped_on_the_negatives_in_colour():
    """Re-encoded grey photos score lowest: counted in the cap they held the JPEG thresholds
    below most of a model's own JPEGs (docs/results/zero-setup.md#jpeg-files). A grey JPEG is
    decided at the thresholds for grey images, so the colour ones cap, at the share of them the
    clean calibration accepts; the section keeps every negative, to state on either kind."""
    untold = _jpeg_records(2.0, n=20, seed=6) + [
        {**r, "grey": False} for r in _jpeg_records(0.5, n=20, seed=7)
    ]  # fmt: skip
    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_mixed_negatives(3.0, 3.0), negative_sources=["photos"])  # fmt: skip
    own = {70: _jpeg_records(2.0, seed=2)}
    told, pooled = (fit_jpeg_thresholds(clean, own, {70: negatives}).at_jpeg_quality(70)
                    for negatives in (_mixed_negatives(2.0, 0.5), untold))  # fmt: skip
    assert told.negatives["n"] == 40 and sum(told.negatives["grey"]) == 20
    assert pooled.threshold < 0.6 < told.threshold < kde_threshold(told.signals, 0.05)
    colour = told.negatives_like(False)
    assert colour.false_acceptance <= clean.negatives_like(False).false_acceptance_limit == 0.05
    assert told.negatives_like(True).false_acceptance == 1.0  # stated on grey: every one


def test_candidate_thresholds_state_on_the_negatives_of_the_images_kind():
    from aedr.decide.attribution import CandidateThresholds

    clean = calibrate(_jpeg_records(1.0), "m", 0.05, "ratio",
                      negatives=_mixed_negatives(1.9, 1.0), negative_sources=["photos"])  # fmt: skip
    sized = fit_size_thresholds(clean, {128: _jpeg_records(2.0, seed=1)}, 256)
    thresholds = CandidateThresholds([sized])
    (small,), family = thresholds.at(None, 128)[0].values(), thresholds.at(None, 128)[1]
    assert small.negatives["n"] == 20 and family.n == 20 and "in colour" in family.describe()
    assert small.threshold == sized.at_size(128).threshold  # capped on all 40, as before
    assert (
        family.rate == small.false_acceptance == np.mean(small.negative_signals < small.threshold)
    )
    (grey,), grey_family = (
        thresholds.at(None, 256, grey=True)[0].values(),
        thresholds.at(None, 256, grey=True)[1],
    )
    assert grey.threshold == clean.threshold and grey_family.rate > 0.3  # no grey thresholds
    assert "grey" in grey_family.describe() and thresholds.at(None, 256)[1].rate == 0.0
