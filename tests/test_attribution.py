import pytest

from aedr.attribution import NO_MODEL, Attributor, attribute
from aedr.calibration import CalibrationError, fit_calibration
from aedr.scoring import ScoreRecord


def calibration(model, center, **kwargs):
    return fit_calibration(
        [center - 0.1, center, center + 0.1, center + 0.05], model, 0.05, **kwargs
    )


def record(model, signal, error=""):
    return ScoreRecord("x.png", model, signal=signal, error=error)


def test_verdict_is_the_accepting_model_with_the_largest_margin():
    calibrations = {"a": calibration("a", 1.0), "b": calibration("b", 2.0)}
    result = attribute([record("a", 0.9), record("b", 1.0)], calibrations)
    assert [d.belongs for d in result.decisions] == [True, True]
    assert result.verdict == "b"  # 1.0 sits further below b's threshold (relative margin)
    assert attribute([record("a", 5.0), record("b", 5.0)], calibrations).verdict == NO_MODEL
    rows = result.rows()
    assert {row["model"] for row in rows} == {"a", "b"} and rows[0]["verdict"] == "b"


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
