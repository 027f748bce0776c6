"""Negatives: the shipped negative photos, and false attribution measured and limited on them."""

import json

import numpy as np
import pytest
from conftest import loss_record

from aedr.decide.attribution import NO_MODEL, attribute
from aedr.decide.calibration import Calibration, CalibrationError, calibrate
from aedr.decide.false_attribution import false_attribution, limit_false_attribution
from aedr.measure.default_photos import TILE, negative_files, negative_tiles
from aedr.measure.record import Measurement


def test_negative_tiles_are_fixed_photo_tiles_cached_as_files(tmp_path):
    tiles = negative_tiles()
    names = [name for name, _ in tiles]
    assert len(tiles) == 64 and len(set(names)) == len(names)
    assert all(t.shape == (TILE, TILE, 3) and t.dtype == np.uint8 for _, t in tiles)
    assert len({name.split("-")[0] for name in names}) == 16  # every photo, none dominating
    assert [n for n, _ in negative_tiles()] == names  # the same set on every call
    files = negative_files(tmp_path)
    assert [f.stem for f in files] == names and all(f.is_file() for f in files)
    stamps = [f.stat().st_mtime_ns for f in files]
    assert [f.stat().st_mtime_ns for f in negative_files(tmp_path)] == stamps  # not rewritten


def negative(signal: float, key: str) -> dict:
    """A negative record whose paper statistic is ``signal``."""
    return {**loss_record(signal * 0.01, 0.01, 1.0), "content_sha256": key}


def calibration(model, center, negatives=(), keys=None) -> Calibration:
    """A paper-statistic calibration with own signals around ``center`` and the given negatives
    (keys k0, k1, ... unless given)."""
    own = [loss_record(s * 0.01, 0.01, 1.0) for s in (center - 0.1, center, center + 0.1, center)]
    keys = keys or [f"k{i}" for i in range(len(negatives))]
    records = [negative(s, k) for s, k in zip(negatives, keys, strict=True)]
    return calibrate(own, model, 0.05, "aedr", negatives=records, negative_sources=["test"])


def test_a_calibration_keeps_its_negatives_and_measures_its_false_acceptance(tmp_path):
    fitted = calibration("a", 1.0, negatives=[0.9, 1.0, 3.0, 4.0])
    assert fitted.negatives["n"] == 4 and fitted.negatives["sources"] == ["test"]
    assert fitted.threshold > 1.0 and fitted.false_acceptance == 0.5
    assert fitted.accepted_negatives() == {"k0", "k1"}
    fitted.save(tmp_path / "a.json")
    assert Calibration.load(tmp_path / "a.json") == fitted
    data = json.loads((tmp_path / "a.json").read_text())
    data["negatives"]["keys"] = ["k0"]
    (tmp_path / "b.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="4 signals and 1 keys"):
        Calibration.load(tmp_path / "b.json")
    plain = calibration("a", 1.0)
    assert "negatives" not in plain.as_dict() and plain.false_acceptance is None


def test_false_attribution_counts_images_any_candidate_accepts():
    a = calibration("a", 1.0, negatives=[0.9, 1.0, 3.0, 4.0])  # accepts k0, k1
    b = calibration("b", 3.0, negatives=[9.0, 3.0, 3.1, 9.0])  # accepts k1, k2
    family = false_attribution([a, b])
    assert family.exact and family.n == 4 and family.rate == 0.75  # k0, k1, k2: each once
    assert "3 of 4 negative images (75%)" in family.describe()
    other = calibration("b", 3.0, negatives=[9.0, 3.0, 3.1, 9.0], keys=["x0", "x1", "x2", "x3"])
    bound = false_attribution([a, other])  # no image in common: the Bonferroni bound
    assert not bound.exact and bound.rate == 1.0 and "at most 100%" in bound.describe()
    assert false_attribution([a, calibration("c", 2.0)]) is None


def test_thresholds_are_lowered_until_the_rate_holds_and_only_where_needed():
    a = calibration("a", 1.0, negatives=[0.9, 1.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    b = calibration("b", 3.0, negatives=[9.0, 3.0, 3.1, 9.0, 9.0, 9.0, 9.0, 9.0])
    assert false_attribution([a, b]).rate == 0.375
    for rate in (0.3, 0.2, 0.1, 0.0):
        limited = limit_false_attribution([a, b], rate)
        assert false_attribution(limited).rate <= rate
        for before, after in zip((a, b), limited, strict=True):
            assert after.threshold <= before.threshold and after.signals == before.signals
            if after.threshold < before.threshold:
                assert after.tuning["own_threshold"] == before.threshold
                assert after.tuning["max_false_attribution"] == rate
    assert limit_false_attribution([a, b], 0.5) == [a, b]  # already within: untouched
    low = calibration("a", 1.0, negatives=[9.0, 2.0, 3.0, 9.0])  # accepts none of them
    high = calibration("b", 3.0, negatives=[1.0, 2.0, 9.0, 9.0])  # accepts k0 and k1
    kept, lowered = limit_false_attribution([low, high], 0.25)
    assert kept is low  # a threshold is never raised to the level of its negatives ...
    assert lowered.accepted_negatives() == {"k0"}  # ... so the other drops only as far as needed
    with pytest.raises(CalibrationError, match="carry no negatives"):
        limit_false_attribution([a, calibration("c", 2.0)], 0.05)
    with pytest.raises(CalibrationError, match=r"in \[0, 1\)"):
        limit_false_attribution([a, b], 1.5)


def test_rows_carry_the_rates_and_the_explanation_names_the_runner_up():
    a = calibration("a", 1.0, negatives=[0.9, 3.0, 4.0, 5.0])
    b = calibration("b", 2.0, negatives=[9.0, 9.0, 9.0, 9.0])
    family = false_attribution([a, b])
    records = [Measurement("x.png", m, loss1=s * 0.01, loss2=0.01, ratio=s, homogeneity=1.0)
               for m, s in (("a", 1.0), ("b", 2.3))]  # fmt: skip
    result = attribute(records, {"a": a, "b": b}, family=family)
    assert result.verdict == "a"
    rows = result.rows()
    assert [r["false_acceptance"] for r in rows] == [0.25, 0.0]
    assert {r["false_attribution"] for r in rows} == {0.25}
    assert (
        "runner-up b" in rows[0]["explanation"]
        and "1 of 4 negative images" in (rows[0]["explanation"])
    )
    far = [Measurement("x.png", m, loss1=0.09, loss2=0.01, ratio=9.0, homogeneity=1.0)
           for m in ("a", "b")]  # fmt: skip
    assert attribute(far, {"a": a, "b": b}).verdict == NO_MODEL
    assert "not measured" in attribute(far, {"a": a, "b": b}).explanation


def test_negatives_with_too_little_detail_count_as_not_accepted(tmp_path):
    """A flat negative is accepted at no threshold (the detail rule), so the stated false
    acceptance and false attribution count it as rejected, as a verdict on it would."""
    own = [loss_record(0.02, 0.01, 0.9, highpass_log_ratio=s, highpass_weight=0.8)
           for s in (0.3, 0.4, 0.5, 0.35)]  # fmt: skip
    negatives = [loss_record(0.02, 0.01, 0.9, highpass_log_ratio=s, highpass_weight=w,
                             content_sha256=f"k{i}")
                 for i, (s, w) in enumerate(((0.2, 0.01), (0.3, 0.9), (2.0, 0.9)))]  # fmt: skip
    fitted = calibrate(own, "a", 0.05, "highpass", negatives=negatives, negative_sources=["t"])
    shortfalls = fitted.negatives["shortfalls"]
    assert "too little detail" in shortfalls[0] and shortfalls[1:] == ["", ""]
    assert fitted.accepted_negatives() == {"k1"} and fitted.false_acceptance == 1 / 3
    assert false_attribution([fitted]).rate == 1 / 3
    fitted.save(tmp_path / "a.json")
    assert Calibration.load(tmp_path / "a.json").false_acceptance == 1 / 3
    detailed = [{**r, "highpass_weight": 0.9} for r in negatives]
    plain = calibrate(own, "a", 0.05, "highpass", negatives=detailed, negative_sources=["t"])
    assert "shortfalls" not in plain.negatives and plain.false_acceptance == 2 / 3
