"""The paper's Tables 1-3 on real autoencoders: one workflow from image folders to the tables.

Images come in the authors' layout, one folder per source: ``SD1.5/``, ``SD2base/``, ``SD2.1/``,
``SDXL/``, ``SD3.5/``, ``FLUX/``, ``KD2.1/``, ``VQDM/`` and ``Real/`` (registry names such as
``sd15`` work too). Every image is scored under every model present twice: as the authors scored
it (``--paper``, statistic ``aedr``) and as the plain commands do (the default settings and
statistic). Thresholds are fitted on each model's own images (even positions; odd ones are
tested, ``aedr.decide.evaluation``). Printed: Table 1 (mean accuracy against the other models'
images), Table 2 (against real photos), Table 3 (seconds per image), each beside the paper's.

:func:`generate_images` makes a folder of a model's images from a prompt list with its diffusers
pipeline (the ``generate`` extra); the autoencoders are loaded VAE-only, as the registry does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aedr.decide.evaluation import REAL, EvaluationResult, evaluate, mean_table
from aedr.decide.statistics import DEFAULT_STATISTIC, PAPER_STATISTIC
from aedr.errors import AedrError
from aedr.files import replacing
from aedr.measure.images import iter_image_files
from aedr.measure.settings import ScoreSettings

PAPER_MODELS: dict[str, str] = {
    "SD1.5": "sd15", "SD2base": "sd2base", "SD2.1": "sd21", "SDXL": "sdxl",
    "SD3.5": "sd35", "FLUX": "flux1", "KD2.1": "kandinsky21", "VQDM": "vq-diffusion",
}  # fmt: skip
"""The paper's eight models: its folder names and the registry entries holding their VAEs."""
REAL_FOLDER = "Real"
MODES: dict[str, tuple[Callable[[], ScoreSettings], str]] = {
    "paper": (ScoreSettings.paper, PAPER_STATISTIC),
    "default": (ScoreSettings, DEFAULT_STATISTIC),
}
"""How each column is measured: ``aedr score --paper`` with the paper's statistic, and the plain
commands' settings and statistic."""
PAPER_TABLES: dict[str, dict[str, float | None]] = {
    table: dict.fromkeys(PAPER_MODELS) for table in ("vs_models", "vs_real", "seconds")
}
"""The paper's published per-model numbers (Tables 1, 2 and 3 of arXiv 2507.18988), beside which
the measured ones are printed. Not transcribed yet: the paper was not reachable where this was
written; fill them in here, and the tables print them."""


class ReproductionError(AedrError, ValueError):
    """Image folders the tables cannot be computed from."""


@dataclass
class Reproduction:
    """Per mode (``paper``, ``default``): the evaluation and the seconds per image per model."""

    labels: dict[str, str]
    results: dict[str, EvaluationResult] = field(default_factory=dict)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def tables(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """``{table: {model: {"published": x, mode: y, ...}}}`` for vs_models, vs_real, seconds."""
        means = {mode: mean_table(result) for mode, result in self.results.items()}
        models = list(next(iter(self.results.values())).models)
        out: dict[str, dict[str, dict[str, float | None]]] = {}
        for table in ("vs_models", "vs_real", "seconds"):
            out[table] = {}
            for model in models:
                row: dict[str, float | None] = {"published": _published(table, model)}
                for mode in self.results:
                    if table == "seconds":
                        row[mode] = self.seconds[mode].get(model)
                    else:
                        row[mode] = means[mode].get(model, {}).get(table)
                out[table][model] = row
        return out

    def markdown(self) -> str:
        """Tables 1-3 as markdown, the paper's numbers beside the measured ones."""
        titles = {
            "vs_models": "Table 1: mean accuracy against the other models' images",
            "vs_real": "Table 2: accuracy against real photos",
            "seconds": "Table 3: seconds per image (one double reconstruction, this machine)",
        }
        modes = list(self.results)
        lines = []
        for table, rows in self.tables().items():
            lines += [f"### {titles[table]}", "",
                      "| model | paper (published) | " + " | ".join(
                          f"aedr {'--paper' if m == 'paper' else m}" for m in modes) + " |",
                      "|---|---|" + "---|" * len(modes)]  # fmt: skip
            for model, row in rows.items():
                cells = [_cell(row["published"], table)] + [_cell(row[m], table) for m in modes]
                lines.append(f"| {_paper_name(model)} | " + " | ".join(cells) + " |")
            lines.append("")
        if all(v is None for table in PAPER_TABLES.values() for v in table.values()):
            lines.append("The paper's per-model numbers are not transcribed in this release "
                         "(aedr.reproduction.PAPER_TABLES); read them in arXiv 2507.18988, "
                         "Tables 1-3.")  # fmt: skip
        return "\n".join(lines) + "\n"


def _published(table: str, model: str) -> float | None:
    return PAPER_TABLES[table].get(_paper_name(model))


def _paper_name(model: str) -> str:
    return next((paper for paper, name in PAPER_MODELS.items() if name == model), model)


def _cell(value: float | None, table: str) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:.3f}" if table == "seconds" else f"{value:.4f}"


def image_labels(folder: str | os.PathLike) -> dict[str, str]:
    """``path -> source`` for the images under ``folder``'s source folders: a registry model
    (the paper's folder names map to theirs) or ``real``; other folders are an error."""
    from aedr.autoencoders.registry import get_spec

    root = Path(folder)
    if not root.is_dir():
        raise ReproductionError(f"{root} is not a folder of source folders")
    labels: dict[str, str] = {}
    unknown = []
    for source in sorted(p for p in root.iterdir() if p.is_dir()):
        if source.name == REAL_FOLDER or source.name.lower() == REAL:
            name = REAL
        elif source.name in PAPER_MODELS:
            name = PAPER_MODELS[source.name]
        elif (spec := get_spec(source.name)) is not None:
            name = spec.name
        else:
            unknown.append(source.name)
            continue
        labels.update((str(path), name) for path in iter_image_files([source]))
    if unknown:
        raise ReproductionError(
            f"folders that name no model: {', '.join(unknown)}; use the paper's names "
            f"({', '.join(PAPER_MODELS)}), registry names (aedr models) or {REAL_FOLDER}"
        )
    models = sorted(set(labels.values()) - {REAL})
    if not models or REAL not in labels.values():
        raise ReproductionError(
            f"{root} needs a {REAL_FOLDER} folder and at least one model's folder of images"
        )
    return labels


def reproduce(
    folder: str | os.PathLike,
    *,
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    random_weights: bool = False,
    modes: Sequence[str] = tuple(MODES),
    progress: Callable[[str], None] | None = None,
) -> Reproduction:
    """Score every image under every model whose folder is present, in each mode, and evaluate.

    Each model's autoencoder is loaded once per mode (the paper's precision and codebook decoding
    for ``paper``, ``auto`` for ``default``) before its clock starts; ``random_weights`` builds
    the registry's published architectures with seeded random weights (tests, dry runs).
    """
    from aedr.autoencoders import resolve_model
    from aedr.measure.scorer import Scorer

    labels = image_labels(folder)
    paths = sorted(labels)
    models = sorted(set(labels.values()) - {REAL})
    run = Reproduction(labels)
    for mode in modes:
        settings_of, statistic = MODES[mode]
        records: list[dict[str, Any]] = []
        run.seconds[mode] = {}
        for model in models:
            handle = resolve_model(
                model, weights_dir, device, "paper" if mode == "paper" else "auto",
                quantize=True if mode == "paper" else None, random_weights=random_weights,
            )  # fmt: skip
            handle.load()
            if progress:
                progress(f"{mode}: scoring {len(paths)} images with {model}")
            start = time.perf_counter()
            records += [r.as_dict() for r in Scorer([handle], settings_of()).score_paths(paths)]
            run.seconds[mode][model] = (time.perf_counter() - start) / len(paths)
        run.results[mode] = evaluate(records, labels, None, statistic)
    return run


def generate_images(
    model: str,
    prompts: Sequence[str],
    count: int,
    out: str | os.PathLike,
    *,
    device: str = "cuda",
    seed: int = 0,
    pipeline: Callable[[str, str], Any] | None = None,
) -> list[Path]:
    """``count`` images of registry ``model`` from ``prompts`` (cycled), seeded ``seed + i``,
    saved as ``out/000.png``, ...: what the authors' ``gen_img.py`` makes, to score with
    :func:`reproduce`. ``pipeline(hub_id, device)`` builds the text-to-image pipeline (default:
    diffusers' ``DiffusionPipeline``, which needs the ``generate`` extra and the hub)."""
    from aedr.autoencoders.registry import get_spec

    spec = get_spec(model)
    if spec is None or spec.hub_id is None:
        raise ReproductionError(f"{model!r} is not a registry model with a hub pipeline")
    if not prompts:
        raise ReproductionError("no prompts: give a file with one prompt per line")
    if count < 1:
        raise ReproductionError(f"count must be at least 1, not {count}")
    import torch

    build = pipeline or _diffusers_pipeline
    text_to_image = build(spec.hub_id, device)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for index in range(count):
        generator = torch.Generator(device).manual_seed(seed + index)
        image = text_to_image(prompt=prompts[index % len(prompts)], generator=generator).images[0]
        path = folder / f"{index:03d}.png"
        with replacing(path, "wb") as stream:
            image.save(stream, "PNG")
        saved.append(path)
    return saved


def _diffusers_pipeline(hub_id: str, device: str) -> Any:
    try:
        from diffusers import DiffusionPipeline

        pipeline = DiffusionPipeline.from_pretrained(hub_id)
    except ImportError as exc:
        raise ReproductionError(
            f"generating images needs the generate extra: pip install 'aedr[generate]' ({exc})"
        ) from None
    return pipeline.to(device)
