"""Stage timing: marked stages are summed while a collection is active, and cost nothing else."""

import pytest

from aedr import timing
from aedr.measure.scorer import Scorer
from aedr.measure.store import ScoreStore


def test_a_scoring_run_is_broken_down_into_its_stages(random_tiny, image_folder, tmp_path):
    with ScoreStore(tmp_path / "s.sqlite") as store, timing.collect() as times:
        records = list(Scorer([random_tiny], store=store).score_paths([image_folder]))
    measured = [r for r in records if not r.error]
    assert measured and set(times.seconds) <= set(timing.STAGES)
    for name in ("hash", "store", "decode", "homogeneity", "preprocessing", "encoder",
                 "decoder", "evidence"):  # fmt: skip
        assert times.seconds[name] > 0, name
    assert times.calls["encoder"] == times.calls["decoder"] == 2 * len(measured)
    assert times.calls["hash"] == len(records)


def test_nothing_is_counted_outside_a_collection(random_tiny, image_folder):
    with timing.collect() as times:
        pass
    list(Scorer([random_tiny]).score_paths([image_folder]))
    assert not times.seconds
    with pytest.raises(ValueError, match="unknown stage 'encode'"), timing.stage("encode"):
        pass
    with timing.collect(), pytest.raises(RuntimeError, match="active already"), timing.collect():
        pass
