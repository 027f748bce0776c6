from dataclasses import replace

import pytest
import torch
from conftest import TEST_PROVENANCE, loss_record

from aedr.attributor import Attributor
from aedr.decide.attribution import AMBIGUOUS, NO_MODEL, attribute, caution_of
from aedr.decide.calibration import CalibrationError, calibrate
from aedr.measure.provenance import Provenance
from aedr.measure.record import Measurement
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings


def calibration(model, center, **provenance):
    """A calibration of the paper's statistic whose own signals lie around ``center``."""
    signals = [center - 0.1, center, center + 0.1, center + 0.05]
    carried = {**TEST_PROVENANCE, **provenance}
    records = [loss_record(s * 0.01, 0.01, 1.0, provenance=carried) for s in signals]
    return calibrate(records, model, 0.05, "aedr")


def record(model, signal, error="", group="", **size):
    """A measurement whose paper statistic is ``signal`` (homogeneity 1)."""
    if signal is None:
        return Measurement("x.png", model, group, error=error, **size)
    return Measurement("x.png", model, group, loss1=signal * 0.01, loss2=0.01, ratio=signal,
                       homogeneity=1.0, error=error, **size)  # fmt: skip


def test_verdict_is_the_accepting_model_with_the_highest_p_value():
    calibrations = {"a": calibration("a", 1.0), "b": calibration("b", 2.0)}
    result = attribute([record("a", 1.05), record("b", 1.85)], calibrations)
    assert [d.belongs for d in result.decisions] == [True, True]
    p_a, p_b = (d.p_value for d in result.decisions)
    assert 0 < p_a < p_b < 1  # 1.85 is more typical of b than 1.05 of a
    assert p_b >= 2 * p_a and result.verdict == "b" and result.candidates == ("b", "a")
    assert attribute([record("a", 5.0), record("b", 5.0)], calibrations).verdict == NO_MODEL
    rows = result.rows()
    assert {row["model"] for row in rows} == {"a", "b"} and rows[0]["verdict"] == "b"
    assert rows[0]["p_value"] == pytest.approx(p_a) and rows[0]["statistic"] == "aedr"
    assert result.measurements[1].ratio == 1.85


def test_p_value_is_the_upper_tail_of_the_kde():
    cal = calibration("a", 1.0)
    assert cal.p_value(-100.0) == pytest.approx(1.0) and cal.p_value(100.0) == pytest.approx(0.0)
    assert cal.p_value(cal.threshold) == pytest.approx(cal.alpha, abs=2e-3)
    assert cal.belongs(cal.threshold - 1e-3) and cal.p_value(cal.threshold - 1e-3) > cal.alpha


def test_close_p_values_of_different_groups_are_ambiguous_same_group_is_not():
    calibrations = {"a": calibration("a", 1.0), "b": calibration("b", 1.0)}
    close = [record("a", 1.0), record("b", 1.01)]
    assert attribute(close, calibrations).verdict == "a"  # by default the higher p-value wins
    tied = attribute(close, calibrations, ambiguity_ratio=2.0)
    assert tied.verdict == AMBIGUOUS and set(tied.candidates) == {"a", "b"}
    exact = attribute([record("a", 1.0), record("b", 1.0)], calibrations)  # equal p-values
    assert exact.verdict == AMBIGUOUS and set(exact.candidates) == {"a", "b"}
    grouped = attribute([record("a", 1.0, group="g"), record("b", 1.01, group="g")], calibrations)
    assert grouped.verdict == "a" and grouped.verdict_group == "g"


def test_images_off_the_decoder_grid_carry_a_caution():
    assert caution_of(512, 768) == "" and caution_of(None, None) == ""
    assert "509x768 is not a multiple of 8" in caution_of(509, 768)
    assert "--robust auto" in caution_of(509, 768)  # what undoes it, where something can
    calibrations = {"a": calibration("a", 1.0)}
    assert attribute([record("a", 1.0, width=64, height=48)], calibrations).caution == ""
    flagged = attribute([record("a", 1.0, width=61, height=48)], calibrations)
    assert flagged.verdict == "a" and flagged.caution.startswith("unreliable")
    assert flagged.rows()[0]["caution"] == flagged.caution


def test_calibrations_made_before_size_thresholds_decide_as_before_with_a_caution():
    new, old = calibration("a", 1.0), replace(calibration("b", 1.0), aedr_version="0.9.1")
    records = [record("a", 1.0, width=64, height=48), record("b", 3.0, width=64, height=48)]
    assert attribute(records, {"a": new, "b": replace(old, aedr_version="0.10.0")}).caution == ""
    result = attribute(records, {"a": new, "b": old})
    assert result.verdict == "a" and result.decisions[1].threshold == old.threshold
    assert "calibrated before aedr 0.10 (b): no thresholds for images smaller" in result.caution


def test_jpegs_below_quality_90_carry_a_caution_that_says_which_thresholds_decided():
    assert caution_of(64, 48, jpeg_quality=90) == ""
    clean = caution_of(64, 48, jpeg_quality=75)
    assert clean.startswith("tentative: a JPEG of quality 75") and "--jpeg-qualities" in clean
    assert "aedr 0.17 or later" in clean  # where they come by default
    fitted = caution_of(64, 48, jpeg_quality=50, jpeg_thresholds=True)
    assert "fitted for its quality" in fitted and "--jpeg-qualities" not in fitted
    assert caution_of(61, 48, jpeg_quality=50).startswith("unreliable")  # the grid comes first
    calibrations = {"a": calibration("a", 1.0)}
    jpeg = attribute([record("a", 1.0, width=64, height=48, jpeg_quality=70)], calibrations)
    assert jpeg.caution == caution_of(64, 48, jpeg_quality=70)


def test_a_calibration_made_before_jpeg_thresholds_decides_a_jpeg_as_before_with_a_caution():
    """Calibrated on negatives before 0.17.0, a calibration has no JPEG thresholds: a JPEG is
    decided at the clean threshold as it was then, and the caution says so, at any quality."""
    old = replace(calibration("a", 1.0), aedr_version="0.16.0",
                  negatives={"sources": ["tiles"], "n": 1, "signals": [9.0], "keys": [""]})  # fmt: skip
    jpeg = attribute([record("a", 1.05, width=64, height=48, jpeg_quality=95)], {"a": old})
    assert jpeg.verdict == "a" and jpeg.decisions[0].threshold == old.threshold
    assert jpeg.caution.startswith("calibrated before aedr 0.17 (a): no thresholds for JPEG files")
    png = attribute([record("a", 1.05, width=64, height=48)], {"a": old})
    assert png.caution == ""
    now = replace(old, aedr_version="0.17.0")  # made now without them: the user's choice
    assert (
        attribute([record("a", 1.05, width=64, height=48, jpeg_quality=95)], {"a": now}).caution
        == ""
    )


def test_an_enlarged_jpeg_s_caution_names_the_thresholds_that_decided_it():
    """A JPEG found enlarged is decided at its chain's thresholds where the calibrations have
    them, else at its quality's (JPEG first), else at the enlargement's, else at the clean ones:
    the caution says which."""
    found = {"resized_by": 1.5, "enlargement_strength": 20.0}
    by_chain = caution_of(384, 384, found, 75, jpeg_thresholds=True, enlargement_thresholds=1.5)
    assert by_chain.startswith("tentative: enlarged x1.5")
    assert "enlarged x1.5, then re-encoded near its quality (75)" in by_chain
    by_quality = caution_of(384, 384, found, 75, jpeg_thresholds=True)
    assert "fitted for its JPEG quality (75)" in by_quality and "no thresholds" not in by_quality
    by_factor = caution_of(384, 384, found, 75, enlargement_thresholds=1.5)
    assert "enlarged x1.5 and measured so" in by_factor and "JPEG quality" not in by_factor
    assert "no thresholds for enlarged images" in caution_of(384, 384, found, 75)


def test_a_grey_image_is_tentative_and_its_caution_names_the_thresholds_that_decided_it():
    from aedr.decide.calibration import fit_grey_thresholds

    plain = {"a": calibration("a", 1.0), "b": calibration("b", 2.0)}
    grey_records = [{**loss_record(s * 0.01, 0.01, 1.0, provenance=TEST_PROVENANCE), "grey": True}
                    for s in (1.4, 1.5, 1.6, 1.55)]  # fmt: skip
    negatives = [{**r, "grey": True} for r in grey_records]
    fitted = fit_grey_thresholds(plain["a"], grey_records, negatives, ["photos"])
    grey = record("a", 1.5, width=64, height=64, grey=True)
    both = {"a": fitted.at_grey(True), "b": plain["b"]}
    result = attribute([grey, record("b", 5.0, width=64, height=64, grey=True)], both)
    assert result.reliability == "tentative" and result.caution.startswith("tentative: a grey")
    assert "b decided at thresholds fitted on colour images" in result.caution
    assert [row["threshold_grey"] for row in result.rows()] == [True, False]
    all_grey = attribute([grey], {"a": fitted.at_grey(True)})
    assert "made grey, each accepting at most its alpha" in all_grey.caution
    assert "colour images" not in all_grey.caution and all_grey.confidence != "high"
    colour = attribute([record("a", 1.0, width=64, height=64)], plain)
    assert colour.caution == "" and colour.reliability == ""
    from_csv = Measurement.from_dict({**record("a", 1.0, width=64, height=64).as_dict(),
                                      "grey": "False"})  # fmt: skip
    assert from_csv.grey is False and attribute([from_csv], plain).caution == ""


def test_errors_propagate_without_a_verdict():
    calibrations = {"a": calibration("a", 1.0), "b": calibration("b", 2.0)}
    both_failed = attribute([record("a", None, "bad"), record("b", None, "bad")], calibrations)
    assert both_failed.verdict == "" and both_failed.error == "bad"
    one_failed = attribute([record("a", None, "oom"), record("b", 1.0)], calibrations)
    assert one_failed.verdict == "b" and one_failed.decisions[0].error == "oom"


def test_a_statistic_undefined_for_one_image_is_an_error_row_not_a_crash():
    records = [loss_record(r * 0.01, 0.01, h) for r, h in ((1.1, 0.3), (1.2, 0.5), (1.3, 0.4),
                                                           (1.15, 0.6))]  # fmt: skip
    fitted = calibrate(records, "a", 0.05, "fitted")
    exact = Measurement("x.png", "a", loss1=0.0, loss2=0.01, ratio=0.0, homogeneity=0.5)
    result = attribute([exact], {"a": fitted})
    assert result.verdict == "" and "loss1 is zero" in result.error


def test_attributor_checks_every_calibration_against_its_model(random_tiny, image_folder):
    identity = {"identity": "random:0"}
    good = calibration("random-tiny", 1.0, **identity)
    attributor = Attributor([good], [random_tiny])
    assert attributor.attribute_file(image_folder / "a.png").decisions[0].signal is not None
    with pytest.raises(CalibrationError, match="identity: 'sha256:other' vs 'random:0'"):
        Attributor([calibration("random-tiny", 1.0, identity="sha256:other")], [random_tiny])
    with pytest.raises(CalibrationError, match="dtype: 'bf16' vs 'fp32'"):
        Attributor([calibration("random-tiny", 1.0, dtype="bf16", **identity)], [random_tiny])
    other = calibration("other", 1.0, latent="sample", seed=1)
    with pytest.raises(CalibrationError, match=r"measured differently.*latent"):
        Attributor([good, other], [random_tiny, random_tiny])
    with pytest.raises(CalibrationError, match="more than one calibration"):
        Attributor([good, good], [random_tiny, random_tiny])
    with pytest.raises(CalibrationError, match="no calibrations"):
        Attributor([], [])
    with pytest.raises(CalibrationError, match="given for the calibration of 'other'"):
        Attributor([calibration("other", 1.0, **identity)], [random_tiny])


def test_an_assumed_unverified_identity_applies_to_the_loaded_weights(random_tiny, image_folder):
    bare = [{k: v for k, v in loss_record(s * 0.01, 0.01, 1.0).items() if k != "provenance"}
            for s in (0.9, 1.0, 1.1, 1.05)]  # fmt: skip
    assumed = calibrate(bare, "random-tiny", 0.05, "aedr",
                        assumed_provenance=Provenance("unverified"))  # fmt: skip
    Attributor([assumed], [random_tiny])  # no identity to check: the user stated the settings
    sampled = calibrate(bare, "random-tiny", 0.05, "aedr",
                        assumed_provenance=Provenance("unverified", ScoreSettings(latent="sample", seed=1)))  # fmt: skip
    attributor = Attributor([sampled], [random_tiny])
    assert attributor.scorer.settings.latent == "sample" and attributor.scorer.settings.seed == 1
    assert Scorer([random_tiny]).settings.latent == "mode"


def highpass_record(model, signal, weight):
    return Measurement("flat.png", model, loss1=0.02, loss2=0.01, ratio=2.0, homogeneity=0.9,
                       highpass_log_ratio=signal, highpass_weight=weight, width=64, height=64)  # fmt: skip


def test_an_image_with_too_little_detail_is_attributed_to_no_model():
    """A nearly flat image's signal rests on a few pixels: it is shown, but no threshold accepts
    it, and the caution says why (every candidate: insufficient evidence; some: which were not
    named)."""
    records = [loss_record(0.02, 0.01, 0.9, highpass_log_ratio=s) for s in (0.3, 0.4, 0.5, 0.35)]
    calibrations = {m: calibrate(records, m, 0.05, "highpass") for m in ("a", "b")}
    flat = attribute([highpass_record("a", 0.3, 0.01), highpass_record("b", 0.4, 0.02)],
                     calibrations)  # fmt: skip
    assert flat.verdict == NO_MODEL and not any(d.belongs for d in flat.decisions)
    assert [d.signal for d in flat.decisions] == [0.3, 0.4]
    assert flat.caution.startswith("insufficient evidence: too little detail to attribute: 1.0% ")
    rows = flat.rows()
    assert rows[0]["belongs"] is False and rows[0]["caution"] == flat.caution
    mixed = attribute([highpass_record("a", 0.3, 0.01), highpass_record("b", 0.4, 0.5)],
                      calibrations)  # fmt: skip
    assert mixed.verdict == "b" and mixed.caution.startswith("a not named: too little detail")
    detailed = attribute([highpass_record("a", 0.3, 0.5), highpass_record("b", 0.9, 0.01)],
                         calibrations)  # fmt: skip
    assert detailed.verdict == "a" and detailed.caution == ""  # b rejects it anyway


def test_a_model_left_to_dtype_auto_runs_at_its_calibrations_precision(model_file, image_folder):
    from aedr.autoencoders import resolve_model

    auto = resolve_model(str(model_file))
    assert auto.auto_dtype and auto.dtype_name == "fp32"
    made_in_bf16 = calibration(auto.name, 1.0, identity=auto.identity, dtype="bf16")
    attributor = Attributor([made_in_bf16], [auto])
    assert attributor.scorer.models[0].provenance.dtype == "bf16"
    (decision,) = attributor.attribute_file(image_folder / "a.png").decisions
    assert decision.signal is not None and not decision.error
    assert attributor.scorer.models[0].autoencoder.dtype == torch.bfloat16
    stated = resolve_model(str(model_file), dtype="fp32")
    with pytest.raises(CalibrationError, match="dtype: 'bf16' vs 'fp32'"):
        Attributor([made_in_bf16], [stated])
