import multiprocessing

import pytest

from aedr.store import ScoreStore, StoreError, default_store_path, file_sha256, settings_digest


def test_records_are_keyed_by_content_identity_and_settings(tmp_path):
    path = tmp_path / "s.sqlite"
    with ScoreStore(path) as store:
        store.put("c1", "sha256:a", "k", {"signal": 1.5})
        assert store.get("c1", "sha256:a", "k") == {"signal": 1.5}
        assert store.get("c1", "sha256:b", "k") is None
        assert store.get("c2", "sha256:a", "k") is None
        assert store.get("c1", "sha256:a", "other") is None
    with ScoreStore(path) as reopened:  # persistent
        assert reopened.get("c1", "sha256:a", "k") == {"signal": 1.5} and len(reopened) == 1


def test_settings_digest_is_order_independent_and_sensitive():
    assert settings_digest({"a": 1, "b": 2}) == settings_digest({"b": 2, "a": 1})
    assert settings_digest({"a": 1}) != settings_digest({"a": 2})


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
            store.put(f"content{index}", f"model{worker}", "k", {"worker": worker, "i": index})


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
        assert store.get("content199", "model3", "k") == {"worker": 3, "i": 199}


def test_file_sha256(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a").startswith("ba7816bf")
