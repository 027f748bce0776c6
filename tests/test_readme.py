"""The README's first command (``aedr demo``) and every Python example in it, run as written."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from aedr.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tae_dir):
    """(folder, printed table) of ``aedr demo`` run in a fresh folder, whose score store the
    README's examples then share (they read the demo's images from ``aedr-demo/``)."""
    folder = tmp_path_factory.mktemp("readme")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("AEDR_WEIGHTS_DIR", str(tae_dir))
        patch.setenv("AEDR_STORE", str(folder / "scores.sqlite"))
        patch.chdir(folder)
        assert main(["demo", "-q"]) == 0
    return folder, printed.getvalue()


@pytest.fixture
def demo_folder(demo):
    return demo[0]


def test_demo_writes_examples_and_gets_the_generated_images_right(demo):
    folder, table = demo
    assert len(list((folder / "aedr-demo" / "calibration").glob("*.png"))) == 20
    assert len(list((folder / "aedr-demo" / "test").rglob("*.png"))) == 16
    assert "AEDR demo: model taesd" in table
    assert re.search(r"taesd\s+n=8 .* correct [78]/8", table), table


def test_readme_python_examples_run(demo_folder, tae_dir, monkeypatch, capsys):
    examples = python_examples()
    assert len(examples) >= 2
    monkeypatch.setenv("AEDR_WEIGHTS_DIR", str(tae_dir))
    monkeypatch.chdir(demo_folder)
    namespace: dict = {}
    for example in examples:
        exec(compile(example, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "aedr-demo/test/generated/generated-000.png taesd" in printed
    assert (demo_folder / "taesd.json").is_file()
