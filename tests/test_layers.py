"""The package's rooms: measuring never decides, deciding never measures, and the shells sit on
the workflows. Read from the modules' own imports (every import, also inside functions)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aedr"
SHELLS = ("aedr.cli", "aedr.server", "aedr.demo", "aedr.ray_engine")
WORKFLOWS = ("aedr.workflows", "aedr.attributor")


def imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("aedr")}


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("module", modules("measure"), ids=lambda p: p.stem)
def test_measuring_modules_decide_nothing(module):
    forbidden = ("aedr.decide", *WORKFLOWS, *SHELLS)
    assert not {name for name in imports(module) if name.startswith(forbidden)}


@pytest.mark.parametrize("module", modules("decide"), ids=lambda p: p.stem)
def test_deciding_modules_never_measure(module):
    forbidden = ("aedr.measure.scorer", "aedr.autoencoders", *WORKFLOWS, *SHELLS)
    assert not {name for name in imports(module) if name.startswith(forbidden)}


def test_every_user_error_shares_one_base():
    from aedr.autoencoders.base import ModelUnavailableError
    from aedr.decide.calibration import CalibrationError
    from aedr.errors import AedrError
    from aedr.measure.images import ImageError
    from aedr.measure.provenance import ProvenanceError
    from aedr.measure.settings import SettingsError
    from aedr.measure.store import StoreError
    from aedr.records import RecordFileError

    for error in (ModelUnavailableError, CalibrationError, ImageError, ProvenanceError,
                  SettingsError, StoreError, RecordFileError):  # fmt: skip
        assert issubclass(error, AedrError), error
