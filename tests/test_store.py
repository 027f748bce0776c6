import multiprocessing
import os
import stat

import pytest

from aedr.measure.provenance import Provenance
from aedr.measure.store import ScoreStore, StoreError, default_store_path, file_sha256
from aedr.schemas import provenance_schema


def test_records_are_keyed_by_content_and_provenance(tmp_path):
    path = tmp_path / "s.sqlite"
    with ScoreStore(path) as store:
        store.put("c1", "p1", {"loss1": 1.5})
        assert store.get("c1", "p1") == {"loss1": 1.5}
        assert store.get("c1", "p2") is None
        assert store.get("c2", "p1") is None
    with ScoreStore(path) as reopened:  # persistent
        assert reopened.get("c1", "p1") == {"loss1": 1.5} and len(reopened) == 1


def test_provenance_digest_covers_every_field_but_the_package_version():
    flat = {"identity": "sha256:a", "latent": "sample", "alignment": "resize"}
    base = Provenance.from_dict(flat)
    assert base.digest() == Provenance.from_dict(dict(flat)).digest()
    implied = base.as_dict()
    assert (implied["noise"], implied["grid"], implied["resize_filter"]) == (
        "batch", "model", "bilinear",
    )  # fmt: skip
    crop = {"latent": "mode", "alignment": "crop"}
    changes = {"identity": {"identity": "sha256:b"}, "dtype": {"dtype": "bf16"},
               "device": {"device": "cuda"}, "latent": {"latent": "mode"}, "seed": {"seed": 1},
               "alignment": {"alignment": "crop"}, "resize_filter": {"resize_filter": "bicubic"},
               "crop": {"crop": 64}, "crops": {"crop": 64, "crops": 2},
               "measurement": {"measurement": "inversion"},
               "homogeneity_levels": {"homogeneity_levels": 16}, "grid": {"grid": "paper"},
               "noise": {"noise": "image"}, "exif": {"exif": "ignore"},
               "loss_dtype": {"loss_dtype": "model"}, "distance": {"distance": "ssim"},
               "border": {"border": 8},
               "inversion_resize": {"measurement": "inversion", "inversion_resize": True},
               "preset": {"preset": "paper"}, "robust": {**crop, "robust": "auto"},
               "resized_by": {**crop, "robust": "auto", "resized_by": 1.5},
               "enlargement": {**crop, "robust": "auto", "enlargement": "off"},
               "measurement_version": {"measurement_version": 7}}  # fmt: skip
    recorded = set(provenance_schema().model_fields) - {"aedr_version"}
    assert set(changes) == recorded  # every recorded field but the package version is covered
    for field, overrides in changes.items():
        changed = Provenance.from_dict({**flat, **overrides})
        assert changed.digest() != base.digest(), field
        assert any(d.startswith(f"{field}: ") for d in base.differences(changed, version=True))


def test_a_release_that_changes_no_number_keeps_the_store_keys():
    """The package version is information: a docs-only release keeps every stored measurement."""
    flat = {"identity": "sha256:a", "aedr_version": "0.5.0"}
    released = Provenance.from_dict({**flat, "aedr_version": "0.5.1"})
    assert released.digest() == Provenance.from_dict(flat).digest()
    assert released.differences(Provenance.from_dict(flat), version=True) == []


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


def test_a_new_store_is_readable_by_its_owner_only(tmp_path):
    old = os.umask(0o022)  # the usual umask, under which files are created 0644
    try:
        store = ScoreStore(tmp_path / "cache" / "aedr" / "scores.sqlite")
        store.put("a" * 64, "p", {"loss1": 1.0})
    finally:
        os.umask(old)
    files = [store.path, store.path.with_name("scores.sqlite-wal")]
    assert all(path.exists() for path in files)
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.get("a" * 64, "p")["loss1"] == 1.0


def test_a_store_made_before_kept_images_gains_them_and_keeps_its_results(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the results table as 0.8.0 made it
        db.executescript(
            "CREATE TABLE results (id TEXT PRIMARY KEY, result TEXT NOT NULL, "
            "created TEXT NOT NULL DEFAULT (datetime('now'))) WITHOUT ROWID;"
        )
        db.execute("INSERT INTO results (id, result) VALUES (?, ?)",
                   ("a" * 32, '{"filename": "old.png", "verdict": "none"}'))  # fmt: skip
    with ScoreStore(path) as store:
        assert store.get_result("a" * 32) == {
            "filename": "old.png", "verdict": "none", "annotation": {}
        }  # fmt: skip
        assert store.result_image("a" * 32) is None
        assert [r["filename"] for r in store.find_results()] == ["old.png"]
        store.put_result("b" * 32, {"filename": "new.png", "verdict": "x"}, b"bytes")
        assert store.result_image("b" * 32) == b"bytes"
        assert [r["filename"] for r in store.find_results()] == ["new.png", "old.png"]


def test_results_are_found_by_name_hash_or_note_with_wildcards_taken_literally(tmp_path):
    with ScoreStore(tmp_path / "s.sqlite") as store:
        store.put_result("a" * 32, {"filename": "100%_done.png", "file": {"sha256": "ab12"}})
        store.put_result("b" * 32, {"filename": "other.png", "file": {"sha256": "cd34"}})
        store.annotate_result("b" * 32, {"case": "Case-7", "note": "from the seized phone"})
        found = {text: [r["id"][0] for r in store.find_results(text)]
                 for text in ("%", "_", "AB12", "seized", "case-7", "note", "")}  # fmt: skip
        assert found == {"%": ["a"], "_": ["a"], "AB12": ["a"], "seized": ["b"],
                         "case-7": ["b"], "note": [], "": ["b", "a"]}  # fmt: skip
        assert store.delete_result("a" * 32) and not store.delete_result("a" * 32)
        assert [r["id"][0] for r in store.find_results()] == ["b"]
