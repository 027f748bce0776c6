"""The measurement settings are declared once: validation, provenance, schema and flags follow."""

import contextlib
import io
from dataclasses import fields

import pytest

from aedr.cli import build_parser
from aedr.measure.provenance import Provenance
from aedr.measure.settings import ScoreSettings, SettingsError, declarations
from aedr.schemas import provenance_schema


def full_help(command: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        build_parser(full_help=True).parse_args([command, "--help"])
    return printed.getvalue()


def test_every_setting_is_declared_and_recorded():
    names = [declared.name for declared, _ in declarations()]
    assert names == [f.name for f in fields(ScoreSettings)]
    assert set(names) <= set(provenance_schema().model_fields)
    # omitted at their default (provenances made before them keep their meaning and key)
    omitted = {"robust", "resized_by", "distance", "enlargement"}
    assert set(ScoreSettings().recorded()) | omitted == set(names)


@pytest.mark.parametrize("command", ["score", "calibrate", "localize"])
def test_every_flagged_setting_is_a_flag_of_the_measuring_commands(command):
    shown = full_help(command)
    for declared, setting in declarations():
        if setting.flag:
            assert setting.flag in shown, (command, declared.name)


def test_flags_map_onto_settings_by_name():
    from aedr.cli import _settings

    args = build_parser().parse_args(
        ["score", "x.png", "--model", "m", "--latent", "sample", "--seed", "3", "--resize",
         "--loss-dtype", "model", "--crop", "64", "--crops", "2"]
    )  # fmt: skip
    settings = _settings(args)
    assert (settings.latent, settings.seed, settings.alignment, settings.loss_dtype) == (
        "sample", 3, "resize", "model",
    )  # fmt: skip
    assert (settings.crop, settings.crops) == (64, 2)


@pytest.mark.parametrize(
    ("declared", "value"),
    [("homogeneity_levels", 3), ("resize_filter", "lanczos"), ("seed", "1"), ("resized_by", 20.0)],
)
def test_values_outside_a_declaration_are_refused(declared, value):
    with pytest.raises(SettingsError, match=f"{declared} must be"):
        ScoreSettings(**{declared: value, "robust": "auto"})


def test_the_provenance_records_settings_that_do_not_apply_as_unused():
    recorded = ScoreSettings(seed=7, resize_filter="bicubic", crops=1).recorded()
    assert (recorded["seed"], recorded["resize_filter"], recorded["crops"]) == (None, None, 1)
    assert ScoreSettings(seed=7).canonical() == ScoreSettings().canonical()
    again = Provenance.from_dict(Provenance("w", ScoreSettings(seed=7)).as_dict())
    assert again.settings == ScoreSettings().canonical()


def test_the_paper_preset_is_a_library_object():
    paper = ScoreSettings.paper()
    assert (paper.alignment, paper.latent, paper.seed, paper.preset) == (
        "resize", "sample", 1, "paper",
    )  # fmt: skip
    assert paper.robust_mode() == "off"


def test_a_provenance_from_before_the_border_reads_as_every_pixel():
    """A provenance written before ``border`` existed measured every pixel: it reads as border
    0 and keeps its key; a border recorded is read back."""
    old = ScoreSettings(border=0).recorded()
    assert "border" not in old
    assert ScoreSettings.from_recorded(old).border == 0
    assert ScoreSettings.from_recorded(ScoreSettings(border=16).recorded()).border == 16
    inversion = ScoreSettings(measurement="inversion", border=8)  # highpass is not measured
    assert "border" not in inversion.recorded()
    assert ScoreSettings.from_recorded(inversion.recorded()) == inversion.canonical()
    with pytest.raises(SettingsError, match="border must be"):
        ScoreSettings(border=-1)
