import pytest

from aedr.attribution import AMBIGUOUS, NO_MODEL, Attributor, attribute
from aedr.calibration import CalibrationError, fit_calibration
from aedr.scoring import ScoreRecord


def calibration(model, center, **kwargs):
    return fit_calibration(
        [center - 0.1, center, center + 0.1, center + 0.05], model, 0.05, **kwargs
    )


def record(model, signal, error=""):
    return ScoreRecord("x.png", model, signal=signal, error=error)


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
    assert rows[0]["p_value"] == pytest.approx(p_a)


def test_p_value_is_the_upper_tail_of_the_kde():
    cal = calibration("a", 1.0)
    assert cal.p_value(-100.0) == pytest.approx(1.0) and cal.p_value(100.0) == pytest.approx(0.0)
    assert cal.p_value(cal.threshold) == pytest.approx(cal.alpha, abs=2e-3)
    assert cal.belongs(cal.threshold - 1e-3) and cal.p_value(cal.threshold - 1e-3) > cal.alpha


def test_close_p_values_of_different_groups_are_ambiguous_same_group_is_not():
    calibrations = {"a": calibration("a", 1.0), "b": calibration("b", 1.0)}
    tied = attribute([record("a", 1.0), record("b", 1.01)], calibrations)
    assert tied.verdict == AMBIGUOUS and set(tied.candidates) == {"a", "b"}
    same_group = [
        ScoreRecord("x.png", "a", "g", signal=1.0), ScoreRecord("x.png", "b", "g", signal=1.01)
    ]  # fmt: skip
    grouped = attribute(same_group, calibrations)
    assert grouped.verdict == "a" and grouped.verdict_group == "g"


def test_images_off_the_decoder_grid_carry_a_caution():
    from aedr.attribution import caution_of

    assert caution_of(512, 768) == "" and caution_of(None, None) == ""
    assert "509x768 is not a multiple of 8" in caution_of(509, 768)
    calibrations = {"a": calibration("a", 1.0)}
    on_grid = ScoreRecord("x.png", "a", signal=1.0, width=64, height=48)
    off_grid = ScoreRecord("y.png", "a", signal=1.0, width=61, height=48)
    assert attribute([on_grid], calibrations).caution == ""
    flagged = attribute([off_grid], calibrations)
    assert flagged.verdict == "a" and flagged.caution.startswith("unreliable")
    assert flagged.rows()[0]["caution"] == flagged.caution


def test_errors_propagate_without_a_verdict():
    calibrations = {"a": calibration("a", 1.0), "b": calibration("b", 2.0)}
    both_failed = attribute([record("a", None, "bad"), record("b", None, "bad")], calibrations)
    assert both_failed.verdict == "" and both_failed.error == "bad"
    one_failed = attribute([record("a", None, "oom"), record("b", 1.0)], calibrations)
    assert one_failed.verdict == "b" and one_failed.decisions[0].error == "oom"


def test_attributor_refuses_mismatched_weights_and_settings(random_tiny, image_folder):
    good = calibration(
        "random-tiny", 1.0, settings={"latent": "mode"}, autoencoder_identity="random:0"
    )
    attributor = Attributor([good], [random_tiny])
    assert attributor.attribute_file(image_folder / "a.png").decisions[0].signal is not None
    wrong = calibration("random-tiny", 1.0, autoencoder_identity="sha256:other")
    with pytest.raises(CalibrationError, match="recalibrate"):
        Attributor([wrong], [random_tiny])
    other = calibration("other", 1.0, settings={"latent": "sample"})
    with pytest.raises(CalibrationError, match="different scoring settings"):
        Attributor([good, other], [random_tiny, random_tiny])
    with pytest.raises(CalibrationError, match="more than one calibration"):
        Attributor([good, good], [random_tiny, random_tiny])
