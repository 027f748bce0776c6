import math
import re
from pathlib import Path

import pytest
from conftest import loss_record

from aedr.decide.statistics import (
    DEFAULT_STATISTIC,
    MIN_HIGHPASS_WEIGHT,
    STATISTIC_NAMES,
    StatisticError,
    get_statistic,
    measurement_of,
)
from aedr.measure.reconstruction import SignalError

SOURCE = Path(__file__).resolve().parents[1] / "src" / "aedr"


def test_each_statistic_computes_its_definition():
    record = loss_record(0.02, 0.01, 0.5)
    assert get_statistic("aedr").value(record) == pytest.approx(1.0)
    assert get_statistic("ratio").value(record) == pytest.approx(2.0)
    assert get_statistic("single-loss").value(record) == pytest.approx(0.02)
    fitted = get_statistic("fitted").value(record, {"beta": 0.5})
    assert fitted == pytest.approx(math.log(2.0) + 0.5 * math.log(0.5))
    assert get_statistic("highpass").value({**record, "highpass_log_ratio": 0.4}) == 0.4
    assert get_statistic("highpass").value({**record, "highpass_log_ratio": "0.4"}) == 0.4  # CSV
    assert get_statistic("ac").value({**record, "ac_log_ratio": -0.1}) == -0.1
    inversion = {"measurement": "inversion", "inversion_loss": 0.3}
    assert get_statistic("latenttracer").value(inversion) == 0.3


def test_statistics_refuse_what_they_cannot_read():
    record = loss_record(0.02, 0.01, 0.5)
    with pytest.raises(StatisticError, match="needs parameters"):
        get_statistic("fitted").value(record)
    with pytest.raises(StatisticError, match="reads inversion measurements, not reconstruction"):
        get_statistic("latenttracer").value(record)
    with pytest.raises(StatisticError, match="unknown statistic 'magic'"):
        get_statistic("magic")
    with pytest.raises(StatisticError, match="lacks"):
        get_statistic("aedr").value({"loss1": 0.1, "loss2": 0.1})
    with pytest.raises(SignalError, match="loss1 is zero"):
        get_statistic("fitted").value(loss_record(0.0, 0.01, 0.5), {"beta": 0.5})
    assert not get_statistic("fitted").usable(loss_record(0.0, 0.01, 0.5))
    assert get_statistic("single-loss").usable(loss_record(0.0, 0.01, 0.5))
    for name, field in (("highpass", "highpass_log_ratio"), ("ac", "ac_log_ratio")):
        for losses_alone in (record, {**record, field: ""}):  # the authors' files, older CSVs
            with pytest.raises(StatisticError, match=rf"no {field} .* measure the images"):
                get_statistic(name).value(losses_alone)
            assert not get_statistic(name).usable(losses_alone)


def test_highpass_and_ac_tell_an_image_with_too_little_detail_to_accept():
    """The share of the image carrying evidence gates acceptance; records measured before the
    share existed, and statistics that do not read it, have no shortfall."""
    highpass = get_statistic("highpass")
    record = {**loss_record(0.02, 0.01, 0.5), "highpass_log_ratio": 0.3}
    flat = {**record, "highpass_weight": MIN_HIGHPASS_WEIGHT / 2}
    assert re.search(
        r"too little detail to attribute: 12\.5% .* under the 25%", highpass.shortfall(flat)
    )
    assert highpass.shortfall({**flat, "highpass_weight": str(MIN_HIGHPASS_WEIGHT / 2)})  # CSV
    assert highpass.value(flat) == 0.3 and highpass.usable(flat)  # still measured and shown
    for enough in ({**record, "highpass_weight": MIN_HIGHPASS_WEIGHT}, record,
                   {**record, "highpass_weight": ""}):  # fmt: skip
        assert highpass.shortfall(enough) == ""
    assert get_statistic("fitted").shortfall(flat) == ""
    assert get_statistic("ac").shortfall(flat) == highpass.shortfall(flat)  # the same detail rule


def test_measurement_kinds_and_the_default_are_defined_once():
    assert DEFAULT_STATISTIC in STATISTIC_NAMES
    assert measurement_of("latenttracer") == "inversion"
    assert {measurement_of(n) for n in STATISTIC_NAMES if n != "latenttracer"} == {"reconstruction"}


def test_no_module_but_statistics_branches_on_a_statistic_name():
    names = "|".join(re.escape(n) for n in STATISTIC_NAMES)
    branch = re.compile(rf"""(==|!=|\bin\b)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = [
        f"{path.relative_to(SOURCE)}:{number}: {line.strip()}"
        for path in SOURCE.rglob("*.py")
        if path.name != "statistics.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if branch.search(line)
    ]
    assert offenders == []
