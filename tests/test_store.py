import multiprocessing
from dataclasses import fields, replace

import pytest

from aedr.measure.provenance import Provenance
from aedr.measure.store import ScoreStore, StoreError, default_store_path, file_sha256


def test_records_are_keyed_by_content_and_provenance(tmp_path):
    path = tmp_path / "s.sqlite"
    with ScoreStore(path) as store:
        store.put("c1", "p1", {"loss1": 1.5})
        assert store.get("c1", "p1") == {"loss1": 1.5}
        assert store.get("c1", "p2") is None
        assert store.get("c2", "p1") is None
    with ScoreStore(path) as reopened:  # persistent
        assert reopened.get("c1", "p1") == {"loss1": 1.5} and len(reopened) == 1


def test_provenance_digest_covers_every_field():
    base = Provenance("sha256:a", latent="sample", alignment="resize")
    assert base.digest() == Provenance("sha256:a", latent="sample", alignment="resize").digest()
    assert (base.noise, base.grid, base.resize_filter) == ("batch", "model", "bilinear")  # implied
    changes = (("identity", "sha256:b"), ("dtype", "bf16"), ("device", "cuda"),
               ("latent", "mode"), ("seed", 1), ("alignment", "crop"),
               ("resize_filter", "bicubic"), ("crop", 64), ("crops", 2),
               ("measurement", "inversion"), ("homogeneity_levels", 16), ("aedr_version", "9"),
               ("grid", "paper"), ("noise", "image"), ("exif", "ignore"), ("loss_dtype", "model"),
               ("inversion_resize", True), ("preset", "paper"), ("robust", "auto"),
               ("resized_by", 1.5))  # fmt: skip
    assert {field for field, _ in changes} == {f.name for f in fields(Provenance)}
    for field, value in changes:
        changed = replace(base, **{field: value})
        assert changed.digest() != base.digest(), field
        assert base.differences(changed, version=True) == [
            f"{field}: {getattr(base, field)!r} vs {value!r}"
        ]


def test_default_location_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AEDR_STORE", str(tmp_path / "x.sqlite"))
    assert default_store_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("AEDR_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "aedr" / "scores.sqlite"


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "bad.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use score store"):
        ScoreStore(tmp_path / "bad.sqlite")


def _writer(path: str, worker: int) -> None:
    with ScoreStore(path) as store:
        for index in range(200):
            store.put(f"content{index}", f"model{worker}", {"worker": worker, "i": index})


def test_concurrent_processes_do_not_corrupt_the_store(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ScoreStore(path).close()
    processes = [multiprocessing.Process(target=_writer, args=(path, w)) for w in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    with ScoreStore(path) as store:
        assert len(store) == 800
        assert store.get("content199", "model3") == {"worker": 3, "i": 199}


def test_file_sha256(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a").startswith("ba7816bf")
