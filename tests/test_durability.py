"""Killing a run loses at most the records in flight; --resume completes the file, no duplicates."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import smooth_image
from PIL import Image

from aedr.records import OutputExistsError, RecordWriter, completed_keys


def start_score(folder, out, tae_dir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "aedr", "score", str(folder), "--model", "taesd",
         "--weights-dir", str(tae_dir), "--out", str(out), "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        # A shell running the suite in the background ignores SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def wait_for_records(out, count, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_text().count("\n") >= count:
            return
        time.sleep(0.05)
    pytest.fail("the run finished or stalled before it could be interrupted")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_kill_then_resume_gives_every_record_exactly_once(tmp_path, tae_dir, how):
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(10):
        Image.fromarray(smooth_image(index, (224, 224))).save(folder / f"{index}.png")
    out = tmp_path / "scores.jsonl"
    process = start_score(folder, out, tae_dir)
    wait_for_records(out, 2, process)
    process.send_signal(how)
    process.wait(60)
    if how != signal.SIGKILL:
        assert process.returncode == 130  # an orderly stop, every finished record kept
    kept = completed_keys(out)
    assert 2 <= len(kept) < 10
    resumed = start_score(folder, out, tae_dir, "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read().decode()
    with open(out) as stream:
        rows = [json.loads(line) for line in stream]
    assert len(rows) == 10 and len({row["path"] for row in rows}) == 10
    assert all(not row["error"] and row["ratio"] > 0 for row in rows)


def test_completed_keys_cuts_a_partial_last_line(tmp_path):
    out = tmp_path / "r.jsonl"
    with RecordWriter(out, ["path", "model"]) as writer:
        writer.write({"path": "a", "model": "m"})
    with open(out, "a") as stream:
        stream.write('{"path": "b", "mod')  # killed mid-write
    assert completed_keys(out) == {("a", "m")}
    assert out.read_text() == '{"path": "a", "model": "m"}\n'


def test_existing_output_is_not_overwritten_without_asking(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("precious\n")
    with pytest.raises(OutputExistsError, match=r"r\.csv exists"):
        RecordWriter(out, ["path"])
    assert out.read_text() == "precious\n"
