"""Fault injection: each finding of the hostile probe, reproduced and bounded by a timeout.

Every case must end in a specific error record or a one-line exit-2 message (no traceback, no
hang), with the valid files of the same run measured.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image
from safetensors.torch import save_file

from aedr.cli import main

TIMEOUT = 120


@pytest.fixture
def cli(capsys):
    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:
            code = exit.code
        output = capsys.readouterr()
        assert "Traceback" not in output.err
        return code, output.out, output.err

    return run


def good_image(folder: Path, name: str = "good.png", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_image(seed, (48, 64))).save(folder / name)
    return folder / name


def aedr_process(*args, **popen) -> subprocess.Popen:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(
        [sys.executable, "-m", "aedr", *map(str, args)], text=True, env=environment, **streams
    )


# -- inputs that are not regular files ---------------------------------------------------------


def test_fifo_and_device_in_a_folder_are_error_records_not_hangs(model_file, tmp_path):
    folder = tmp_path / "f"
    good_image(folder)
    os.mkfifo(folder / "x.png")
    (folder / "z.png").symlink_to("/dev/zero")
    out = tmp_path / "s.jsonl"
    process = aedr_process("score", folder, "--model", model_file, "--out", out, "-q")
    try:
        _, err = process.communicate(timeout=TIMEOUT)  # a blocked reader would hang here
    finally:
        process.kill()
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert process.returncode == 1 and records["good.png"]["error"] == "", err
    assert "not a regular file (a FIFO)" in records["x.png"]["error"]
    assert "not a regular file (a character device)" in records["z.png"]["error"]


def test_sigterm_ends_a_run_promptly_and_resume_completes_it(model_file, tmp_path):
    folder = tmp_path / "many"
    for index in range(30):
        good_image(folder, f"{index:02d}.png")
    os.mkfifo(folder / "15-fifo.png")
    out = tmp_path / "s.jsonl"
    process = aedr_process("score", folder, "--model", model_file, "--out", out, "-q")
    deadline = time.monotonic() + TIMEOUT
    while not (out.exists() and out.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    # Frozen, the run is known to be mid-way (a signal after main returns meets Python's own
    # teardown, where SIGTERM has its default action again); the TERM is handled on CONT.
    process.send_signal(signal.SIGSTOP)
    assert out.read_text().count("\n") < 31, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    process.wait(timeout=30)  # prompt: a hung reader would keep it alive
    assert process.returncode == 130  # ended as an interrupt, its records flushed
    finished = aedr_process("score", folder, "--model", model_file, "--out", out, "--resume", "-q")
    assert finished.wait(timeout=TIMEOUT) in (0, 1)  # 1 if the FIFO's record is written now
    records = [json.loads(line) for line in out.read_text().splitlines()]
    names = [Path(r["path"]).name for r in records]
    assert sorted(names) == sorted(p.name for p in folder.iterdir())  # each exactly once
    assert [n for n, r in zip(names, records, strict=True) if r["error"]] == ["15-fifo.png"]


# -- the exit-code contract --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("nodir/s.jsonl", (), "folder nodir does not exist"),
        ("nodir/s.jsonl", ("--overwrite",), "folder nodir does not exist"),
        ("adir.jsonl", (), "is a folder"),
        ("adir.jsonl", ("--overwrite",), "is a folder"),
        ("full.jsonl", ("--overwrite",), "No space left on device"),
        ("full.jsonl", (), "exists; pass --overwrite"),
    ],
)
def test_output_problems_are_exit_2_with_one_line(
    cli, model_file, tmp_path, monkeypatch, out, extra, message
):
    image = good_image(tmp_path / "in")
    (tmp_path / "adir.jsonl").mkdir()
    (tmp_path / "full.jsonl").symlink_to("/dev/full")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("score", image, "--model", model_file, "--out", out, *extra)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_stdout_to_a_full_disk_is_exit_2(model_file, tmp_path):
    image = good_image(tmp_path)
    with open("/dev/full", "w") as full:
        process = aedr_process("score", image, "--model", model_file, "-q", stdout=full)
        _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 2 and "No space left on device" in err
    assert "Traceback" not in err


def test_calibrate_checks_its_output_before_measuring(cli, model_file, tmp_path):
    image = good_image(tmp_path / "in")
    started = time.monotonic()
    code, _, err = cli(
        "calibrate", "--model", model_file, image, "--out", tmp_path / "no" / "c.json"
    )
    assert code == 2 and "folder" in err and "does not exist" in err
    assert time.monotonic() - started < 5  # refused before any image was measured


def test_a_corrupt_store_is_exit_2_naming_the_fix(cli, model_file, tmp_path):
    folder = tmp_path / "in"
    for index in range(40):  # distinct images: 40 records span several pages
        good_image(folder, f"{index}.png", seed=index)
    store = tmp_path / "s.sqlite"
    assert cli("score", folder, "--model", model_file, "--store", store, "-q")[0] == 0
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(store.read_bytes())
    inner = len(data) - page_size * 2  # every page but the header's: the tables' b-trees
    data[page_size * 2 :] = np.random.default_rng(0).integers(0, 256, inner, np.uint8).tobytes()
    store.write_bytes(bytes(data))
    out = tmp_path / "s.jsonl"
    code, _, err = cli("score", folder, "--model", model_file, "--store", store, "--out", out)
    assert code == 2 and "score store" in err and "--no-cache" in err, err
    code, _, _ = cli("score", folder, "--model", model_file, "--no-cache", "--out", out,
                     "--overwrite", "-q")  # fmt: skip
    assert code == 0


def test_non_finite_losses_are_error_records_in_every_format(cli, random_tiny, tmp_path):
    import torch

    from aedr.records import read_records

    folder = tmp_path / "weights"
    folder.mkdir()
    decoder = random_tiny.module["decoder"].state_dict()
    save_file(random_tiny.module["encoder"].state_dict(), folder / "n_encoder.safetensors")
    save_file({k: torch.full_like(v, float("nan")) for k, v in decoder.items()},
              folder / "n_decoder.safetensors")  # fmt: skip
    image = good_image(tmp_path / "in")
    for suffix in (".jsonl", ".csv"):
        out = tmp_path / f"s{suffix}"
        code, _, _ = cli("score", image, "--model", folder / "n_encoder.safetensors", "--out", out)
        (record,) = read_records(out)
        assert code == 1 and record["error"].startswith("non-finite reconstruction loss")
        assert record["loss1"] is record["loss2"] is record["ratio"] is None, suffix


def test_a_folder_named_like_an_image_is_a_usage_error(cli, model_file, tmp_path):
    (tmp_path / "y.png").mkdir()
    code, _, err = cli("score", tmp_path / "y.png", "--model", model_file)
    assert code == 2 and "no image files" in err


def test_a_pickle_in_a_diffusers_folder_is_a_clear_error(cli, tmp_path, image_folder):
    from aedr.autoencoders import create_autoencoder

    folder = tmp_path / "vae"
    create_autoencoder("sd15", random_weights=True).module.save_pretrained(folder)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not a real pickle")
    code, _, err = cli("score", image_folder / "a.png", "--model", folder)
    assert code == 2 and "cannot load" in err


# -- calibration integrity ---------------------------------------------------------------------


def calibrated(cli, model_file, tmp_path) -> tuple[Path, Path]:
    """(a folder of 4 images, the calibration of the random model fitted on them)."""
    folder, out = tmp_path / "own", tmp_path / "c.json"
    for index in range(4):
        good_image(folder, f"{index}.png", seed=index)
    code = cli(
        "calibrate", "--model", model_file, folder, "--method", "aedr", "--out", out, "-q",
        "--no-default-negatives",
    )  # fmt: skip
    assert code[0] == 0
    return folder, out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"provenance": None, "model": "taesdxl"}, "provenance: Input should be a valid dict"),
        ({"model": "taesdxl"}, "do not match its digest"),
        ({"signals": "abc"}, "signals: Input should be a valid list"),
        ({"alpha": "x"}, "alpha: Input should be a valid number"),
        ({"format": 1, "settings": []}, "format 1"),
        ({"statistic": "bogus"}, "statistic: Input should be"),
        ({"provenance": {"identity": "x", "crop": -5}}, "provenance crop: Input should be greater"),
    ],
)
def test_edited_calibrations_are_exit_2(cli, model_file, tmp_path, edit, message):
    folder, out = calibrated(cli, model_file, tmp_path)
    out.write_text(json.dumps({**json.loads(out.read_text()), **edit}))
    code, _, err = cli("attribute", folder, "--calibration", out)
    assert code == 2 and message in err


def test_negative_crop_is_refused(cli, model_file, tmp_path):
    code, _, err = cli("score", good_image(tmp_path), "--model", model_file, "--crop", "-5")
    assert code == 2 and "crop must be a whole number of at least 1" in err


# -- memory ------------------------------------------------------------------------------------


def png_file(width: int, height: int, rows: int = 1) -> bytes:
    """A PNG that declares width x height with ``rows`` black rows of pixel data (one: the header
    alone is real; ``height``: a whole flat image in a few kilobytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    packer, row = zlib.compressobj(9), b"\x00" * (3 * width + 1)
    data = b"".join(packer.compress(row) for _ in range(rows)) + packer.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))  # fmt: skip


def peak_rise(model_file: Path, folder: Path, image: Path, *flags: str):
    """(MB the process's peak rose by, exit code, stdout, stderr) of scoring ``image`` in a fresh
    process, after a small image has loaded the model."""
    good = good_image(folder)
    code = (
        "import resource, sys; from aedr.cli import main\n"
        f"main(['score', {str(good)!r}, '--model', {str(model_file)!r}, '-q', '--no-cache'])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"rc = main(['score', {str(image)!r}, '--model', {str(model_file)!r}, '--no-cache',"
        f" *{list(flags)!r}])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('RSS', (after - before) // 1024, rc, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=TIMEOUT)  # fmt: skip
    line = next(x for x in result.stderr.splitlines() if x.startswith("RSS"))
    _, megabytes, returncode = line.split()
    return int(megabytes), int(returncode), result.stdout, result.stderr


def test_an_image_over_the_model_limit_is_refused_from_its_header(model_file, tmp_path):
    """7999 x 8000 (under --max-pixels, over --max-model-pixels): refused without decoding."""
    (tmp_path / "huge.png").write_bytes(png_file(7999, 8000))
    megabytes, code, out, err = peak_rise(model_file, tmp_path, tmp_path / "huge.png", "-q")
    assert code == 1 and megabytes < 100, err
    assert "model-pixel limit" in out


# -- spreadsheets and evaluation -----------------------------------------------------------------


def test_csv_cells_cannot_start_a_formula(cli, model_file, tmp_path, monkeypatch):
    from aedr.records import read_records

    good_image(tmp_path, "=2+5+cmd|calc!A0.png")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "s.csv"
    assert cli("score", "=2+5+cmd|calc!A0.png", "--model", model_file, "--out", out, "-q")[0] == 0
    text = out.read_text()
    assert "\n=2+5" not in text and "\n'=2+5+cmd|calc!A0.png," in text
    (record,) = read_records(out)
    assert record["path"] == "=2+5+cmd|calc!A0.png"  # read back as written


def test_metrics_json_is_valid_json_and_unlabelled_records_are_reported(cli, model_file, tmp_path):
    folder = tmp_path / "in"
    for index in range(4):
        good_image(folder, f"{index}.png", seed=index)
    scores = tmp_path / "s.jsonl"
    cli("score", folder, good_image(tmp_path / "other", "x.png"), "--model", model_file,
        "--out", scores, "-q")  # fmt: skip
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,label\n" + "".join(f"{folder}/{i}.png,{model_file}\n" for i in range(4))
    )
    code, _, err = cli("evaluate", "--scores", scores, "--labels", labels, "--method", "aedr",
                       "--out", tmp_path / "report")  # fmt: skip
    assert code == 1 and "1 record has no label" in err
    metrics = (tmp_path / "report" / "metrics.json").read_text()
    assert "NaN" not in metrics and json.loads(metrics)["mean"]
    code, _, _ = cli("evaluate", "--scores", scores, "--labels", labels, "--method", "aedr",
                     "--out", tmp_path / "report", "--overwrite", "--allow-unlabelled")  # fmt: skip
    assert code == 0


def test_an_oversized_calibration_is_refused_in_seconds(cli, model_file, tmp_path):
    folder, out = calibrated(cli, model_file, tmp_path)
    data = json.loads(out.read_text())
    data["signals"] = np.random.default_rng(0).normal(1, 0.1, 1_000_001).tolist()
    data["n"] = len(data["signals"])
    out.write_text(json.dumps(data))
    started = time.monotonic()
    code, _, err = cli("attribute", folder, "--calibration", out)
    assert code == 2 and "signals: List should have at most 1000000 items" in err
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--max-pixels", "0"], "--max-pixels: must be at least 1, not 0"),
     (["--batch-size", "-1"], "--batch-size: must be at least 1, not -1"),
     (["--workers", "-3"], "--workers: must be at least 1, not -3"),
     (["--max-memory", "0"], "--max-memory: must be above 0, not 0"),
     (["--max-memory", "nan"], "--max-memory: must be above 0, not nan"),
     (["--latent", "sample", "--seed", "99999999999999999999"],
      "seed must be a whole number from 0 to 9223372036854775807")],
)  # fmt: skip
def test_out_of_range_numbers_are_refused_before_any_work(cli, model_file, image_folder, flags,
                                                          message):  # fmt: skip
    code, out, err = cli("score", image_folder, "--model", model_file, *flags)
    assert code == 2 and message in err and out == "" and "Traceback" not in err


def test_an_out_path_naming_a_folder_says_so(cli, model_file, image_folder, tmp_path):
    code, _, err = cli("score", image_folder, "--model", model_file, "--out", tmp_path)
    assert code == 2 and "is a folder" in err and "unknown output format" not in err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("list.jsonl", b"[1, 2]\n", "list.jsonl:1: not a record (a JSON list)"),
        ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        ("latin.csv", b"loss1,loss2,homogeneity,model\n0.1,0.1,0.5,t\xe9\n", "not UTF-8 text"),
        ("wide.csv", b"loss1,loss2,homogeneity,model\n0.1,0.1,0.5," + b"x" * 200_000 + b"\n",
         "not a CSV record (field larger than field limit"),
    ],
)  # fmt: skip
def test_unreadable_score_files_are_exit_2(cli, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    code, _, err = cli("calibrate", "--scores", path, "--out", tmp_path / "c.json")
    assert code == 2 and message in err, err


def test_a_calibration_nested_too_deeply_is_exit_2(cli, image_folder, tmp_path):
    path = tmp_path / "nested.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = cli("attribute", image_folder, "--calibration", path)
    assert code == 2 and "nested too deeply" in err


def test_a_cache_folder_that_is_a_file_is_exit_2(cli, model_file, image_folder, tmp_path,
                                                 monkeypatch):  # fmt: skip
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("AEDR_STORE", str(tmp_path / "cache" / "aedr" / "scores.sqlite"))
    code, _, err = cli("score", image_folder, "--model", model_file, "--out", tmp_path / "s.jsonl")
    assert (
        code == 2 and "cannot create the score store's folder" in err and "Not a directory" in err
    )


def test_a_store_row_that_is_not_json_is_measured_again(model_file, image_folder, tmp_path):
    from aedr.autoencoders import create_autoencoder
    from aedr.measure.scorer import Scorer
    from aedr.measure.store import ScoreStore

    model = create_autoencoder(str(model_file))
    with ScoreStore(tmp_path / "s.sqlite") as store:
        first = [
            r.loss1 for r in Scorer([model], store=store).score_paths([image_folder / "a.png"])
        ]
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        db.execute("UPDATE measurements SET record = '{torn'")
    with ScoreStore(tmp_path / "s.sqlite") as store:
        again = [
            r.loss1 for r in Scorer([model], store=store).score_paths([image_folder / "a.png"])
        ]
    assert again == first
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        (record,) = db.execute("SELECT record FROM measurements").fetchone()
    assert json.loads(record)["loss1"] == first[0]  # replaced by the new measurement


def test_folders_nested_deeper_than_pythons_recursion_limit_are_walked(model_file, tmp_path):
    from aedr.measure.images import iter_image_files

    folder = tmp_path / "deep"
    chain = [folder]
    try:
        for _ in range(1_100):
            chain[-1].mkdir()  # one at a time: os.makedirs recurses too
            chain.append(chain[-1] / "d")
        inner = chain[-2]
        Image.fromarray(smooth_image(0)).save(inner / "x.png")
        (folder / "a.png").write_bytes(b"")
        assert list(iter_image_files([folder])) == [folder / "a.png", inner / "x.png"]
    finally:  # innermost first: pytest's clean-up (shutil.rmtree) recurses too
        for path in reversed(chain):
            for file in path.glob("*.png"):
                file.unlink()
            if path.is_dir():
                path.rmdir()


def test_a_store_on_a_full_disk_is_called_full_not_damaged(model_file, image_folder, tmp_path):
    from aedr.autoencoders import create_autoencoder
    from aedr.measure.scorer import Scorer
    from aedr.measure.store import ScoreStore, StoreError

    with ScoreStore(tmp_path / "s.sqlite") as store:
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # as full as a full disk
        scorer = Scorer([create_autoencoder(str(model_file))], store=store)
        with pytest.raises(StoreError, match="its disk is full") as caught:
            list(scorer.score_paths([image_folder]))
    assert "intact" in caught.value.hint and "damaged" not in str(caught.value)


def test_a_failed_overwrite_of_records_keeps_the_old_file(cli, model_file, tmp_path, monkeypatch):
    """Disk full while ``--overwrite`` replaces a records file: the old file stays whole."""
    import errno

    import aedr.files

    folder = tmp_path / "in"
    for seed in range(3):
        good_image(folder, f"{seed}.png", seed)
    out = tmp_path / "s.jsonl"
    assert cli("score", folder, "--model", model_file, "--out", out)[0] == 0
    before = out.read_bytes()

    class FullDisk:  # a file whose disk fills after the first record
        def __init__(self, stream):
            self.stream, self.written = stream, 0

        def write(self, text):
            self.written += 1
            if self.written > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.stream.write(text)

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.stream.close()

    monkeypatch.setattr(aedr.files, "open", lambda *a, **k: FullDisk(open(*a, **k)),  # noqa: SIM115
                        raising=False)  # fmt: skip
    code, _, err = cli("score", folder, "--model", model_file, "--out", out, "--overwrite",
                       "--no-cache")  # fmt: skip
    assert code == 2 and "No space left on device" in err and "is unchanged" in err, err
    assert out.read_bytes() == before and sorted(tmp_path.iterdir()) == [folder, out]


def test_an_overwrite_replaces_the_records_when_the_run_ends(cli, model_file, tmp_path):
    folder = tmp_path / "in"
    good_image(folder)
    out = tmp_path / "s.csv"
    out.write_text("old,header\n")
    assert cli("score", folder, "--model", model_file, "--out", out, "--overwrite")[0] == 0
    assert out.read_text().startswith("path,") and sorted(tmp_path.iterdir()) == [folder, out]


# -- round three: memory, the server under hostile clients -------------------------------------


def test_a_large_flat_image_is_refused_for_memory_not_run(model_file, tmp_path):
    """The probe's 56 KB 4000x4000 flat PNG took 17.6 GB: now an error record naming the
    budget, in seconds, with the process's peak barely moved."""
    (tmp_path / "flat.png").write_bytes(png_file(4000, 4000, rows=4000))
    assert (tmp_path / "flat.png").stat().st_size < 100_000
    started = time.monotonic()
    megabytes, code, out, err = peak_rise(
        model_file, tmp_path, tmp_path / "flat.png", "--max-memory", "4"
    )
    assert code == 1 and megabytes < 1000, err  # decoding: ~400 MB
    assert "over the memory budget of 4 GiB" in out
    assert "raise --max-memory" in err  # the hint names the flag
    assert time.monotonic() - started < 60


def serve_process(calibration: Path, model: Path, port: int, folder: Path, *flags):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(folder)}
    return subprocess.Popen(
        [sys.executable, "-m", "aedr", "serve", "--calibration", calibration, "--weights-dir",
         model.parent, "--port", str(port), "--store", folder / "store.sqlite", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
    )  # fmt: skip


@pytest.fixture(scope="module")
def served_calibration(model_file, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    for seed in range(6):
        good_image(folder / "made", f"{seed}.png", seed)
    out = folder / "cal.json"
    assert main(["calibrate", "--model", str(model_file), str(folder / "made"), "--out", str(out),
                 "--no-default-negatives", "-q", "--no-cache"]) == 0  # fmt: skip
    return out


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no answer at {url}")


def test_sigterm_stops_the_server_while_it_scores(served_calibration, model_file, tmp_path):
    """Scoring a 1 MP image takes the tiny model many seconds: SIGTERM mid-way ends the
    service within seconds (exit 0), the waiting upload gets 503, the upload folder is gone."""
    import threading
    import urllib.request

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve_process(served_calibration, model_file, port, tmp_path)
    try:
        wait_for(url, server)
        buffer = __import__("io").BytesIO()
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((1024, 1024, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
        boundary = "aedrboundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        body += buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
        answers = []

        def upload():
            request = urllib.request.Request(
                url + "/api/attribute", data=body, method="POST",
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )  # fmt: skip
            try:
                urllib.request.urlopen(request, timeout=TIMEOUT)
                answers.append(200)
            except urllib.error.HTTPError as exc:
                answers.append(exc.code)
            except OSError as exc:
                answers.append(str(exc))

        uploader = threading.Thread(target=upload)
        uploader.start()
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("aedr-serve-*/*.png")):  # the upload is being scored
            assert time.monotonic() < deadline and not answers, answers
            time.sleep(0.05)
        time.sleep(1)
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
        assert time.monotonic() - stopped < 10, output
        uploader.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0 and "Traceback" not in output, output
    assert answers == [503], answers
    assert not list(tmp_path.glob("aedr-serve-*")), "the upload folder was left behind"


def test_slow_request_headers_are_cut_off(tmp_path):
    """1,000 connections that each send one byte of headers and wait: closed after the header
    timeout, while a normal request on a new connection is answered."""
    import asyncio
    import socket
    import threading

    import uvicorn
    from fastapi import FastAPI

    from aedr.server import _protocol

    app = FastAPI()
    app.get("/")(lambda: {"ok": True})
    port = free_port()
    config = uvicorn.Config(app, port=port, log_level="error", http=_protocol(1.0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        slow = []
        for _ in range(1000):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(b"G")
            slow.append(connection)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as normal:
            normal.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert b"200 OK" in normal.recv(4096)
        time.sleep(2.5)
        for connection in slow:  # closed by the server: reads end
            connection.settimeout(5)
            assert connection.recv(10) == b""
            connection.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_png_of_30000_text_chunks_is_capped_in_the_record():
    """The probe's 1.29 MB PNG of 30,000 zTXt chunks made each result 60 MB."""
    from PIL import PngImagePlugin

    from aedr.measure.fileinfo import MAX_ENTRIES, file_facts

    info = PngImagePlugin.PngInfo()
    for index in range(30_000):
        info.add_text(f"k{index}", "v" * 2000, zip=True)
    buffer = __import__("io").BytesIO()
    Image.fromarray(smooth_image(0, (32, 32))).save(buffer, "PNG", pnginfo=info)
    facts = file_facts(buffer.getvalue())
    assert len(facts.png_text) == MAX_ENTRIES
    assert "PNG text: 30000 chunks, the first 32 kept" in facts.problems
    assert len(json.dumps(facts.as_dict())) < 200_000


def test_a_calibration_edited_and_resealed_is_refused_by_a_trusted_key(cli, served_calibration,
                                                                      tmp_path):  # fmt: skip
    """The probe edited a threshold and recomputed the digest: accepted. Signed, the edit breaks
    the signature; stripped of it, the calibration is refused by --trust-key."""
    from aedr.decide.calibration import Calibration
    from aedr.seals import digest_of, load_signing_key

    assert cli("keys", tmp_path / "lab")[0] == 0
    signed = Calibration.load(served_calibration)
    signed.sign(load_signing_key(tmp_path / "lab.key"))
    signed.save(tmp_path / "signed.json")
    image = good_image(tmp_path / "in")
    for name, keep_signature in (("edited", True), ("stripped", False)):
        document = json.loads((tmp_path / "signed.json").read_text())
        document["threshold"] = 1e9  # would attribute everything
        if not keep_signature:
            del document["signature"]
        content = {k: v for k, v in document.items() if k not in ("digest", "signature")}
        document["digest"] = digest_of(content)  # recomputed, as anyone can
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
    code, _, err = cli("attribute", image, "--calibration", tmp_path / "edited.json")
    assert code == 2 and "signature does not match its contents" in err
    code, _, err = cli("attribute", image, "--calibration", tmp_path / "stripped.json",
                       "--trust-key", tmp_path / "lab.pub")  # fmt: skip
    assert code == 2 and "is not signed" in err
    code, out, _ = cli("verify", tmp_path / "signed.json", "--trust-key", tmp_path / "lab.pub")
    assert code == 0 and out.startswith("OK")
