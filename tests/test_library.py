"""The calibration library and the zero set-up path: kept, found, built once, never stale."""

import json
import shutil
from dataclasses import replace

import pytest

from aedr.autoencoders.tiny import TinyAutoencoder
from aedr.decide.calibration import Calibration, calibrate
from aedr.library import (
    CalibrationLibrary,
    LibraryError,
    available_models,
    library_calibrations,
    own_on_every_pixel,
    own_provenance,
)
from aedr.measure.default_photos import negative_tiles, reference_crops
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.measure.store import ScoreStore

BUILT = 6  # decoder-made images per built calibration in these tests (the default is 40)


class Counting(TinyAutoencoder):
    """The random tiny autoencoder, counting the images it encodes."""

    encoded = 0

    def encode(self, images, latent="mode", generator=None):
        type(self).encoded += images.shape[0]
        return super().encode(images, latent, generator)


def counting(random_tiny, identity: str = "random:0") -> Counting:
    return Counting("random-tiny", random_tiny.module["encoder"], random_tiny.module["decoder"],
                    identity)  # fmt: skip


def build(models, library, store=None, **hooks):
    scorers = [Scorer([m], store=store) for m in models]
    return library_calibrations(scorers, library, count=BUILT, **hooks)


def test_reference_crops_share_no_pixel_with_the_negatives():
    crops = reference_crops()
    assert len(crops) >= 20 and all(c.shape == (256, 256, 3) for _, c in crops)
    for name, _ in crops:
        photo, y, x = name.rsplit("-", 2)
        for tile, _ in negative_tiles():
            other, ty, tx = tile.rsplit("-", 2)
            if other == photo:
                apart = (int(y) + 256 <= int(ty) or int(ty) + 128 <= int(y)
                         or int(x) + 256 <= int(tx) or int(tx) + 128 <= int(x))  # fmt: skip
                assert apart, (name, tile)


@pytest.fixture(scope="module")
def built(random_tiny, tmp_path_factory):
    """One library holding one built calibration (built once for the module, on 16 of the 64
    negative tiles: the same path, faster), its store, and how many images the build encoded."""
    folder = tmp_path_factory.mktemp("built")
    library = CalibrationLibrary(folder / "library")
    model = counting(random_tiny)
    names = []
    with ScoreStore(folder / "s.sqlite") as store, pytest.MonkeyPatch.context() as patch:
        patch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)
        ((calibration, source),) = build([model], library, store,
                                          on_built=lambda n, c: names.append(n))  # fmt: skip
    return library, folder / "s.sqlite", type(model).encoded, calibration, source, names


@pytest.fixture
def library(built, tmp_path) -> CalibrationLibrary:
    """A copy of the built library this test may change."""
    copy = tmp_path / "library"
    shutil.copytree(built[0].folder, copy)
    return CalibrationLibrary(copy)


def provenance_of(model):
    return Scorer([model]).models[0].provenance


def test_a_missing_calibration_is_built_once_then_found(random_tiny, built):
    library, store_path, encoded, first, source, names = built
    assert source.origin == "built" and names == [source.name] and encoded > 0
    assert "reference crops" in first.tuning["belonging_images"] and first.negatives
    model = counting(random_tiny)
    before = type(model).encoded
    with ScoreStore(store_path) as store:
        ((again, same),) = build([model], library, store, on_built=lambda n, c: names.append(n))
    assert type(model).encoded == before and names == [source.name]  # not rebuilt, not measured
    assert same == source and again.digest == first.digest
    assert [e.name for e in library.entries()] == [source.name]


def test_calibration_of_own_images_takes_precedence(random_tiny, library, image_folder):
    model = counting(random_tiny)
    records = [r.as_dict() for r in Scorer([model]).score_paths([image_folder])] * 2
    own = calibrate(records, "random-tiny", statistic="highpass")
    path = library.add(own, own_provenance(own), "own")
    found, entry = library.find("random-tiny", provenance_of(model), "highpass")
    assert (entry.origin, entry.name) == ("own", path.name)
    assert found.threshold == own.threshold
    ((_, source),) = build([model], library)
    assert source.origin == "own"


def test_own_calibration_at_another_precision_decides_a_model_left_to_auto(
    model_file, tmp_path, image_folder
):
    from aedr.autoencoders import resolve_model

    library = CalibrationLibrary(tmp_path / "library")
    auto, bf16 = resolve_model(str(model_file)), resolve_model(str(model_file), dtype="bf16")
    records = [r.as_dict() for r in Scorer([bf16]).score_paths([image_folder])] * 2
    own = calibrate(records, auto.name, statistic="highpass")
    path = library.add(own, own_provenance(own), "own")
    built = []
    ((found, source),) = build([auto], library, on_built=lambda n, c: built.append(n))
    assert (source.origin, source.name) == ("own", path.name) and not built
    assert found.measurement_provenance.dtype == "bf16"
    stated = resolve_model(str(model_file), dtype="fp32")  # a stated precision is kept
    assert library.find(auto.name, provenance_of(stated), "highpass") is None


def test_other_weights_never_get_the_old_calibration(random_tiny, library):
    changed = counting(random_tiny, identity="sha256:changed-weights")
    assert library.find("random-tiny", provenance_of(changed), "highpass") is None
    assert library.find("random-tiny", provenance_of(counting(random_tiny)), "highpass")
    assert library.find("random-tiny", provenance_of(counting(random_tiny)), "aedr") is None


def test_a_damaged_built_calibration_is_dropped_to_be_built_again(random_tiny, library):
    (entry,) = library.entries()
    entry.path.write_text(entry.path.read_text()[:200])  # torn
    told = []
    assert library.find("random-tiny", provenance_of(counting(random_tiny)), "highpass",
                        told.append) is None  # fmt: skip
    assert "cannot be used" in told[0] and not entry.path.exists()


def test_a_calibration_built_before_size_thresholds_is_built_again_an_own_one_kept(
    random_tiny, library
):
    (entry,) = library.entries()
    current = Calibration.load(entry.path)
    assert not current.predates_size_thresholds
    old = replace(current, sizes={}, aedr_version="0.9.1")
    provenance = provenance_of(counting(random_tiny))
    library.add(old, provenance, "built")
    told = []
    assert library.find("random-tiny", provenance, "highpass", told.append) is None
    assert "built by aedr 0.9.1, without thresholds for smaller images" in told[0]
    assert not entry.path.exists()
    library.add(old, provenance, "own")  # the user's own: decides as before (with a caution)
    found, kept = library.find("random-tiny", provenance, "highpass")
    assert kept.origin == "own" and found.predates_size_thresholds


def _untold(calibration: Calibration) -> dict:
    """The calibration's negatives as written before grey ones were told apart."""
    return {"negatives": {k: v for k, v in calibration.negatives.items() if k != "grey"}}


@pytest.mark.parametrize(
    ("strip", "version", "lacks", "words"),
    [(lambda c: {"enlargements": {}}, "0.13.0", "predates_enlargement_thresholds",
      "thresholds for enlarged images"),
     (lambda c: {"grey": {}}, "0.14.1", "predates_grey_thresholds", "thresholds for grey images"),
     (_untold, "0.15.0", "predates_negative_kinds", "its grey negatives told apart"),
     (lambda c: {"jpeg": {}}, "0.16.0", "predates_jpeg_thresholds", "thresholds for JPEG files"),
     (lambda c: {"chains": {}}, "0.18.0", "predates_chain_thresholds",
      "thresholds for JPEG files found enlarged")],
)  # fmt: skip
def test_a_calibration_built_before_a_condition_s_thresholds_is_built_again_an_own_one_kept(
    random_tiny, library, strip, version, lacks, words
):
    (entry,) = library.entries()
    current = Calibration.load(entry.path)
    assert not getattr(current, lacks)
    old = replace(current, **strip(current), aedr_version=version)
    provenance = provenance_of(counting(random_tiny))
    library.add(old, provenance, "built")
    told = []
    assert library.find("random-tiny", provenance, "highpass", told.append) is None
    assert f"built by aedr {version}, without " in told[0] and words in told[0]
    library.add(old, provenance, "own")  # the user's own: decides as before (with a caution)
    found, kept = library.find("random-tiny", provenance, "highpass")
    assert kept.origin == "own" and getattr(found, lacks)


def test_an_own_calibration_measured_on_every_pixel_is_told_apart_for_the_run_to_measure_so(
    random_tiny, library, image_folder
):
    """Own calibrations made before aedr 0.12 measured every pixel (border 0): a run with the
    default border finds none measured as it measures, so it is told to measure every pixel."""
    model = counting(random_tiny)
    every = ScoreSettings(border=0)

    def own(settings):
        records = [r.as_dict() for r in Scorer([model], settings).score_paths([image_folder])]
        calibration = calibrate(records * 2, "random-tiny", statistic="highpass")
        return calibration, library.add(calibration, own_provenance(calibration), "own")

    older, _ = own(every)
    assert own_on_every_pixel([Scorer([model])], library) == ["random-tiny"]
    assert own_on_every_pixel([Scorer([model], every)], library) == []  # measures so already
    ((found, source),) = library_calibrations([Scorer([model], every)], library, count=BUILT)
    assert source.origin == "own" and found.digest == older.digest  # it decides as it did
    own(ScoreSettings())  # calibrated again, with the border
    assert own_on_every_pixel([Scorer([model])], library) == []


def test_a_damaged_own_calibration_is_refused_naming_the_file(random_tiny, library, image_folder):
    model = counting(random_tiny)
    records = [r.as_dict() for r in Scorer([model]).score_paths([image_folder])] * 2
    own = calibrate(records, "random-tiny", statistic="highpass")
    path = library.add(own, own_provenance(own), "own")
    edited = json.loads(path.read_text())
    edited["threshold"] = 99.0
    path.write_text(json.dumps(edited))
    with pytest.raises(LibraryError, match=f"{path.name}.*do not match its digest") as caught:
        library.find("random-tiny", provenance_of(model), "highpass")
    assert "aedr calibrations remove" in caught.value.hint


def test_removed_calibrations_are_gone(library):
    (entry,) = library.entries()
    library.remove(entry.name)
    assert library.entries() == []
    with pytest.raises(LibraryError, match="no calibration"):
        library.remove(entry.name)


def test_candidates_are_the_registry_models_with_local_weights(tmp_path, random_tiny, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.delenv("AEDR_WEIGHTS_DIR", raising=False)
    assert available_models(tmp_path) == []
    for part in ("encoder", "decoder"):
        save_file(random_tiny.module[part].state_dict(), tmp_path / f"taesd_{part}.safetensors")
    assert available_models(tmp_path) == ["taesd"]
