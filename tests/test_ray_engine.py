"""The Ray engine on a local Ray instance with 2 CPUs: same records as the local engine, bad files,
re-runs, manifests, a worker killed mid-run, and Parquet read back by calibrate."""

import csv
import math
import os
import signal
from pathlib import Path

import pytest
from conftest import import_or_skip, smooth_image
from PIL import Image

ray = import_or_skip("ray", "the ray extra is not installed")
pyarrow = import_or_skip("pyarrow", "pyarrow (the ray extra) is not installed")

from aedr.autoencoders import create_autoencoder  # noqa: E402
from aedr.measure.record import MEASUREMENT_FIELDS  # noqa: E402
from aedr.measure.scorer import Scorer  # noqa: E402
from aedr.measure.store import file_sha256  # noqa: E402
from aedr.ray_engine import RayOptions, model_loader, score_with_ray  # noqa: E402
from aedr.records import read_records  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def corpus(folder: Path, count: int, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(smooth_image(index, (size, size + 8 * (index % 2)))).save(
            folder / f"{index:03d}.png"
        )
    (folder / "broken.png").write_text("not an image")
    return folder


def by_key(records) -> dict:
    return {(r["path"], r["model"]): r for r in records}


def run(inputs, tae_dir, out, workers=2, progress=None, batch_size=1):
    loader = model_loader(["taesd"], str(tae_dir))
    options = RayOptions(workers=workers, batch_size=batch_size, part_size=3)
    return score_with_ray([str(i) for i in inputs], loader, ["taesd"], str(out), options=options,
                          progress=progress)  # fmt: skip


def test_ray_and_local_engines_give_the_same_records(local_ray, tae_dir, tmp_path):
    images = corpus(tmp_path / "images", 5)
    written, errors = run([images], tae_dir, tmp_path / "out")
    assert (written, errors) == (6, 1)
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 2  # written in parts of 3
    ray_records = by_key(read_records(tmp_path / "out"))
    taesd = create_autoencoder("taesd", weights_dir=tae_dir)
    local_records = by_key(r.as_dict() for r in Scorer([taesd]).score_paths([images]))
    assert ray_records.keys() == local_records.keys()
    for key, local in local_records.items():
        remote = ray_records[key]
        for name in MEASUREMENT_FIELDS:
            if isinstance(local[name], float):
                assert math.isclose(remote[name], local[name], rel_tol=1e-6), (key, name)
            else:
                assert remote[name] == local[name], (key, name)
        assert remote["content_sha256"] == file_sha256(key[0])
    assert (
        "not a recognised image format"
        in ray_records[(str(images / "broken.png"), "taesd")]["error"]
    )


def test_rerun_skips_what_the_output_holds_and_manifests_work(local_ray, tae_dir, tmp_path):
    images = corpus(tmp_path / "images", 3)
    out = tmp_path / "out"
    assert run([images], tae_dir, out)[0] == 4
    assert run([images], tae_dir, out) == (0, 0)
    Image.fromarray(smooth_image(9)).save(images / "new.png")
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "note"])
        writer.writerows([[str(p), "x"] for p in sorted(images.iterdir())])
    assert run([manifest], tae_dir, out) == (1, 0)
    uri = (images / "000.png").as_uri()  # file://, read through pyarrow's filesystems
    table = pyarrow.table({"path": [str(images / "new.png"), uri]})
    pyarrow.parquet.write_table(table, tmp_path / "manifest.parquet")
    assert run([tmp_path / "manifest.parquet"], tae_dir, tmp_path / "out2") == (2, 0)
    from_uri = by_key(read_records(tmp_path / "out2"))[(uri, "taesd")]
    from_path = by_key(read_records(out))[(str(images / "000.png"), "taesd")]
    assert from_uri["content_sha256"] == from_path["content_sha256"]
    assert from_uri["ratio"] == pytest.approx(from_path["ratio"], rel=1e-6)
    records = list(read_records(out))
    assert len(records) == len(by_key(records)) == 5


def score_actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ScoreActor" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(local_ray, tae_dir, tmp_path):
    images = corpus(tmp_path / "images", 16, size=128)
    killed = []

    def kill_one_worker(added: int) -> None:
        if not killed:
            pids = score_actor_pids()
            assert pids, "no scoring actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    written, errors = run([images], tae_dir, tmp_path / "out", progress=kill_one_worker)
    assert killed and (written, errors) == (17, 1)
    records = list(read_records(tmp_path / "out"))
    assert len(records) == 17 and len(by_key(records)) == 17


def test_calibrate_reads_the_parquet_output(local_ray, tae_dir, tmp_path):
    from aedr.cli import main
    from aedr.decide.calibration import Calibration

    images = corpus(tmp_path / "images", 6)
    run([images], tae_dir, tmp_path / "out")
    code = main(["calibrate", "--scores", str(tmp_path / "out"), "--model", "taesd",
                 "--out", str(tmp_path / "taesd.json"), "-q"])  # fmt: skip
    assert code == 1  # the broken file's error record is reported, the rest calibrate
    assert Calibration.load(tmp_path / "taesd.json").n == 6


def test_score_command_with_the_ray_engine(local_ray, tae_dir, tmp_path):
    from aedr.cli import main

    images = corpus(tmp_path / "images", 2)
    command = ["score", "--engine", "ray", str(images), "--model", "taesd",
               "--weights-dir", str(tae_dir), "-q"]  # fmt: skip
    assert main(command) == 2  # --out is required: the dataset to write
    assert main([*command, "--out", str(tmp_path / "out")]) == 1  # broken.png is an error record
    records = list(read_records(tmp_path / "out"))
    assert len(records) == 3 and sum(bool(r["error"]) for r in records) == 1


def test_the_memory_budget_reaches_each_worker(random_tiny):
    from aedr.measure.settings import ScoreSettings
    from aedr.ray_engine import ScoreActor

    actor = ScoreActor(lambda: [random_tiny], ScoreSettings(), 1, 4096**2, 3 * 2**30)
    assert actor.scorer.max_memory == 3 * 2**30
