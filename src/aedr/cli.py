"""The ``aedr`` command line: argument parsing and exit codes over the library's workflows.

Each command's options sit next to its handler; the handler builds library objects from them,
calls one workflow and writes what it returns. Library errors are typed and name the problem;
``main`` maps them to exit code 2 and adds the flag that addresses them.

Exit codes: 0 every input was scored; 1 some inputs failed (each has an error record, the others
were scored); 2 usage or set-up error (bad arguments, model not available, unreadable calibration).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

from aedr import __version__
from aedr.decide.calibration import (
    DEFAULT_ALPHA,
    DEFAULT_CHAINS,
    DEFAULT_ENLARGEMENTS,
    DEFAULT_JPEG_QUALITIES,
    JPEG_AC_BELOW,
    LADDER_IMAGES,
    MAX_LADDER_ENLARGEMENT,
    Calibration,
)
from aedr.decide.statistics import DEFAULT_STATISTIC, PAPER_STATISTIC, STATISTIC_NAMES
from aedr.errors import AedrError
from aedr.files import replacing, write_atomic
from aedr.measure.evidence import DEFAULT_WINDOW
from aedr.measure.images import DEFAULT_MAX_PIXELS
from aedr.measure.scorer import DEFAULT_WORKERS

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2
Commands = Any  # argparse's private _SubParsersAction


class UsageError(AedrError):
    """A problem with the command's arguments or set-up: exit code 2."""


# ---------------------------------------------------------------------------------------------
# options shared by several commands


def _add_output(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--out", help=f"{what} file, .jsonl or .csv (default: JSON Lines on stdout)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _advanced(parser: argparse.ArgumentParser, title: str):
    """An argument group shown by ``--help-all`` only (the paper-reproduction, scale-out and
    tuning knobs): its options still work everywhere."""
    group = parser.add_argument_group(title)
    if not getattr(parser, "full_help", True):
        add = group.add_argument

        def hidden(*flags: str, **options: Any) -> argparse.Action:
            return add(*flags, **{**options, "help": argparse.SUPPRESS})

        group.add_argument = hidden  # type: ignore[method-assign]
    return group


def _add_loading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights-dir",
        help="folder searched for local weights before the hub (default: $AEDR_WEIGHTS_DIR)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device, e.g. cpu, cuda, cuda:1, mps; auto (default): a GPU where there is "
        "one (said in one line), else cpu",
    )
    _add_dtype(parser)
    tuning = _advanced(parser, "models and limits")
    tuning.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the autoencoder: ~1 min to compile, ~10%% faster after (long runs)",
    )
    tuning.add_argument(
        "--quantize",
        choices=("auto", "on", "off"),
        default="auto",
        help="VQ models only: decode through the codebook (on) or not (off); "
        "auto = the registry's choice (off)",
    )
    tuning.add_argument(
        "--max-pixels",
        type=_positive,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images declaring more pixels than this (default {DEFAULT_MAX_PIXELS})",
    )


def _positive(text: str) -> int:
    """A whole number of at least 1 (counts, sizes and limits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    """A finite number above 0 (amounts such as GiB)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _add_dtype(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=("auto", "paper", "fp32", "bf16", "fp16"),
        default="auto",
        help="weights and activations; auto (default) = a calibration's own precision where one "
        "decides, else bf16 on CPUs with native bf16 (AVX512-BF16, AMX) for the models measured "
        "to keep their verdicts in it and fp32 on other CPUs, the family's stable choice on GPU; "
        "paper = the authors' (fp32, bf16 for FLUX.1 and SD 3.5) on every device",
    )


def _add_statistic(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--statistic",
        "--method",
        choices=STATISTIC_NAMES,
        default=None,
        metavar="NAME",
        help=f"decision statistic (default {DEFAULT_STATISTIC}: the weighted high-pass log "
        "ratio, flat areas weighing nothing; --paper: aedr); fitted (log ratio + beta log H), "
        "ac (log ratio of the residuals' AC energies in 8 x 8 blocks), aedr (the paper's "
        "ratio x H), ratio, single-loss, or latenttracer (inversion loss: ~100x slower)",
    )


PAPER_HELP = (
    "reproduce the authors' scripts: statistic aedr, bicubic resize to multiples of 8, latents "
    "sampled per image from one CPU generator seeded 1, --dtype paper, codebook decoding for VQ "
    "models, no EXIF transpose (and the first 500 images in calibration)"
)


def _add_settings(
    parser: argparse.ArgumentParser,
    *,
    only: tuple[str, ...] = (),
    robust_default: str = "",
) -> None:
    """The measurement settings' flags, derived from their declarations
    (``aedr.measure.settings``), or ``only`` those (commands whose other settings come from
    their calibrations). Every default is None, so that a flag given where the measurements' own
    provenance decides (``calibrate --scores``) can be refused."""
    from aedr.measure.settings import GROUP_TITLES, declarations

    groups: dict[str, Any] = {"measurement": parser}
    if not only:
        parser.add_argument("--paper", action="store_true", help=PAPER_HELP)
    for declared, setting in declarations():
        if setting.flag is None or (only and declared.name not in only):
            continue
        if setting.group not in groups:  # shown by --help-all only
            groups[setting.group] = _advanced(parser, GROUP_TITLES[setting.group])
        group = groups[setting.group]
        text = setting.help
        if declared.name == "robust" and robust_default:
            text = text[: text.index("Default:")] + f"Default: {robust_default}"
        options: dict[str, Any] = {"dest": declared.name, "default": None, "help": text}
        if setting.kind is bool:
            options["action"] = "store_true"
        elif setting.choices:
            options["choices"] = [choice for choice in setting.choices if choice is not None]
        else:
            options["type"] = setting.kind
        if setting.metavar:
            options["metavar"] = setting.metavar
        group.add_argument(setting.flag, **options)
        if setting.shortcut and not only:
            flag, value, shortcut_help = setting.shortcut
            group.add_argument(flag, dest=declared.name, action="store_const", const=value,
                               help=shortcut_help)  # fmt: skip


ROBUST_FROM_CALIBRATIONS = (
    "as the calibrations were measured (auto for those made with the defaults since 0.4.0), "
    "off with local maps"
)
CORRECTIONS = ("robust", "resized_by", "enlargement")
"""The settings a command deciding with calibrations may still choose."""


def _setting_flags() -> dict[str, str]:
    """Each measurement setting that has a flag: its name and flag."""
    from aedr.measure.settings import declarations

    return {declared.name: setting.flag for declared, setting in declarations() if setting.flag}


def _add_pipeline(parser: argparse.ArgumentParser) -> None:
    from aedr.measure.scorer import DEFAULT_MAX_MODEL_PIXELS

    pipeline = _advanced(parser, "store and batching")
    pipeline.add_argument(
        "--store",
        help="score store (SQLite) reused across runs "
        "(default: $AEDR_STORE or $XDG_CACHE_HOME/aedr/scores.sqlite)",
    )
    pipeline.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the score store"
    )
    pipeline.add_argument(
        "--batch-size",
        type=_positive,
        help="images of equal size per autoencoder batch (default: 1 on CPU, 8 on GPU)",
    )
    pipeline.add_argument(
        "--workers",
        type=_positive,
        help=f"threads reading and decoding images ahead (default {DEFAULT_WORKERS})",
    )
    pipeline.add_argument(
        "--max-model-pixels",
        type=_positive,
        default=DEFAULT_MAX_MODEL_PIXELS,
        help="refuse larger inputs to one autoencoder pass (use --crop for big images; "
        f"default {DEFAULT_MAX_MODEL_PIXELS})",
    )
    pipeline.add_argument(
        "--max-memory",
        type=_positive_float,
        metavar="GIB",
        help="refuse an image whose autoencoder pass is estimated to need more memory, and "
        "shrink batches to fit (default: 3/4 of the memory available when the model first runs)",
    )


def _add_calibrations(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--calibration",
        action="append",
        required=required,
        metavar="CALIB",
        help="calibration JSON from `aedr calibrate`; repeatable"
        + ("" if required else " (default: the calibration library's, built where missing)"),
    )
    parser.add_argument(
        "--max-false-attribution",
        type=float,
        metavar="RATE",
        help="lower the thresholds, where needed, until at most RATE of the calibrations' "
        "negatives (images no candidate made) is attributed to some candidate, e.g. 0.05; "
        "trades own-image recall for it",
    )
    _add_trust_key(parser)


def _add_trust_key(parser: argparse.ArgumentParser) -> None:
    _advanced(parser, "signatures").add_argument(
        "--trust-key",
        action="append",
        metavar="PUB",
        help="use only calibrations signed by this public key (from `aedr keys`); repeatable",
    )


def _add_sign_key(parser, what: str) -> None:
    parser.add_argument(
        "--sign-key",
        metavar="KEY",
        help=f"sign {what} with this private key (`aedr keys NAME` makes NAME.key), so that "
        "whoever trusts its public key can check who made it",
    )


def _signing_key(args: argparse.Namespace):
    from aedr.seals import load_signing_key

    return None if args.sign_key is None else load_signing_key(args.sign_key)


def _trusted(args: argparse.Namespace, calibrations, sources: Sequence[str]) -> None:
    """With ``--trust-key``, refuse calibrations that no given key signed (a signature present
    was checked when the calibration was read)."""
    from aedr.seals import check_trusted, load_public_key

    keys = [load_public_key(path) for path in args.trust_key or ()]
    if not keys:
        return
    for calibration, source in zip(calibrations, sources, strict=True):
        check_trusted(calibration.signer(source), keys, source)


def _statistic(args: argparse.Namespace) -> str:
    if getattr(args, "paper", False) and args.statistic is None:
        return PAPER_STATISTIC
    return args.statistic or DEFAULT_STATISTIC


def _settings(args: argparse.Namespace):
    """The ScoreSettings of the command's flags (defaults for those not given; with --paper, the
    authors' for those not given)."""
    from dataclasses import replace

    from aedr.decide.statistics import measurement_of
    from aedr.measure.settings import MeasurementKind, ScoreSettings

    measurement = cast("MeasurementKind", measurement_of(_statistic(args)))
    base = (
        ScoreSettings.paper(measurement) if args.paper else ScoreSettings(measurement=measurement)
    )
    given = {name: getattr(args, name) for name in _setting_flags()}
    return replace(base, **{name: value for name, value in given.items() if value is not None})


def _models(models: Sequence[str], args: argparse.Namespace) -> list:
    """Handles for ``models``: located now (errors surface before any image), loaded on demand.

    A hub model that is not cached yet is loaded (downloaded) now, so that a failure is a set-up
    error rather than one in the middle of a run.
    """
    from aedr.autoencoders import resolve_model

    quantize = _quantize(args)
    handles = [
        resolve_model(
            m, args.weights_dir, args.device, _dtype(args), quantize=quantize, compile=args.compile
        )
        for m in models
    ]
    for handle in handles:
        if handle.identity is None:
            handle.load()
    return handles


def _quantize(args: argparse.Namespace) -> bool | None:
    if getattr(args, "paper", False) and args.quantize == "auto":
        return True  # the authors let diffusers decode through the codebook
    return {"auto": None, "on": True, "off": False}[args.quantize]


def _dtype(args: argparse.Namespace) -> str:
    if getattr(args, "paper", False) and args.dtype == "auto":
        return "paper"
    return args.dtype


def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The command's store, batching and limits: the Scorer's (and Attributor's) keywords."""
    from aedr.measure.store import ScoreStore, default_store_path

    store = None
    if not args.no_cache:  # closed when the command ends (see main)
        store = args.resources.enter_context(ScoreStore(args.store or default_store_path()))
    return {
        "store": store,
        "batch_size": args.batch_size or (1 if str(args.device).startswith("cpu") else 8),
        "workers": DEFAULT_WORKERS if args.workers is None else args.workers,
        "max_pixels": args.max_pixels,
        "max_model_pixels": args.max_model_pixels,
        "max_memory": _pipeline_memory(args),
    }


def _pipeline_memory(args: argparse.Namespace) -> int | None:
    """``--max-memory`` in bytes (None: the default budget)."""
    return None if args.max_memory is None else int(args.max_memory * 2**30)


def _scorer(models: Sequence[str], args: argparse.Namespace, settings, local_maps: bool = False):
    from aedr.measure.scorer import Scorer

    return Scorer(_models(models, args), settings, **_pipeline(args), local_maps=local_maps)


def _progress_bar(quiet: bool, unit: str = "img"):
    """A progress bar on stderr that appears only for runs longer than a few seconds."""
    from tqdm import tqdm

    return tqdm(unit=unit, delay=3, file=sys.stderr, dynamic_ncols=True, disable=quiet)


def _progress(items: Iterable, quiet: bool, unit: str = "img") -> Iterator:
    """``items``, advancing a progress bar (see ``_progress_bar``)."""
    with _progress_bar(quiet, unit) as bar:
        for item in items:
            yield item
            bar.update()


def _writer(
    out: str | None,
    fields: Sequence[str],
    overwrite: bool,
    append: bool = False,
    fmt: str | None = None,
):
    """Records to ``out`` (.jsonl/.csv), or to stdout when no file is named (JSON Lines unless
    ``fmt`` says csv)."""
    from aedr.records import RecordWriter

    if out:
        return RecordWriter(out, fields, overwrite=overwrite, append=append)
    return RecordWriter(sys.stdout, fields, fmt=fmt or "jsonl")


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


ERROR_HINTS = {
    "model-pixel limit": "measure big images in crops with --crop N [--crops K], or raise "
    "--max-model-pixels",
    "over the limit of": "raise --max-pixels for trusted files",
    "memory budget": "raise --max-memory (GiB) if the machine has the memory, or measure big "
    "images in crops with --crop N [--crops K]",
}
"""Library error phrases, and the flags that address them (record errors name no flags)."""


def _no_images(paths: Sequence[str]) -> str:
    from aedr.measure.images import IMAGE_EXTENSIONS

    return (
        f"no image files in {', '.join(paths)} (folders are searched for "
        f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
    )


def _hint(args: argparse.Namespace, errors: Iterable[str]) -> None:
    """One line per kind of error seen, naming the flag to use."""
    seen = {hint for error in errors for phrase, hint in ERROR_HINTS.items() if phrase in error}
    for hint in sorted(seen):
        _say(args, f"hint: {hint}")


# ---------------------------------------------------------------------------------------------
# aedr score


def add_score(commands: Commands) -> None:
    score = _command(commands, "score", "measure images with one or more models' autoencoders")
    score.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    score.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="registry name, hub id[:subfolder] or local path; repeatable",
    )
    _add_output(score, "measurement records")
    score.add_argument(
        "--resume",
        action="store_true",
        help="complete an interrupted --out file: images already in it are skipped",
    )
    _add_statistic(score)
    _add_loading(score)
    _add_settings(score)
    _add_pipeline(score)
    scale = _advanced(score, "scale-out (Ray)")
    scale.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a Ray cluster, writing a Parquet dataset to "
        "--out DIR (needs the ray extra); PATH may then be a CSV/Parquet manifest with a 'path' "
        "column, and a re-run skips the records --out holds",
    )
    scale.add_argument(
        "--ray-address", help="with --engine ray: cluster to join (default $RAY_ADDRESS or local)"
    )
    scale.add_argument(
        "--ray-workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"with --engine ray: scoring actors (default {DEFAULT_WORKERS})",
    )
    scale.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0,
        help="with --engine ray: GPUs each actor takes (default 0: CPU)",
    )
    score.set_defaults(run=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    from aedr.measure.images import iter_image_files
    from aedr.measure.record import MEASUREMENT_FIELDS

    if args.engine == "ray":
        return _score_with_ray(args)
    scorer = _scorer(args.model, args, _settings(args))
    paths = iter_image_files(args.paths)
    if args.resume:
        from aedr.measure.record import display_path
        from aedr.records import completed_keys

        if not args.out:
            raise UsageError("--resume needs --out: the file to complete")
        done = completed_keys(args.out)
        names = [model.name for model in scorer.models]
        paths = (p for p in paths if any((display_path(p), n) not in done for n in names))
    total, errors = 0, []
    with _writer(args.out, MEASUREMENT_FIELDS, args.overwrite, args.resume) as writer:
        for records in _progress(scorer.score_images(paths), args.quiet):
            for record in records:
                writer.write(record.as_dict())
                total += 1
                if not record.ok:
                    errors.append(record.error)
    if total == 0 and not args.resume:
        raise UsageError(_no_images(args.paths))
    failed = len(errors)
    _say(args, f"measured {total - failed} of {total} (image, model) pairs; {failed} failed")
    _hint(args, errors)
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


def _score_with_ray(args: argparse.Namespace) -> int:
    from aedr.ray_engine import RayEngineError, RayOptions, model_loader, score_with_ray

    if not args.out:
        raise UsageError("--engine ray needs --out DIR: the Parquet dataset to write (or complete)")
    if args.ray_workers < 1 or args.gpus_per_worker < 0:
        raise UsageError("--ray-workers must be positive and --gpus-per-worker not negative")
    if args.workers is not None:
        raise UsageError("--workers sets local reader threads; with --engine ray Ray Data reads")
    settings = _settings(args)
    handles = _models(args.model, args)  # located here: set-up errors before the cluster starts
    loader = model_loader(
        args.model, args.weights_dir, args.device, _dtype(args), _quantize(args), args.compile
    )
    batch_size = args.batch_size or (8 if args.gpus_per_worker else 1)
    options = RayOptions(
        args.ray_address, args.ray_workers, args.gpus_per_worker, batch_size,
        max_model_pixels=args.max_model_pixels, max_memory=_pipeline_memory(args),
    )  # fmt: skip
    with _progress_bar(args.quiet, "rec") as bar:
        try:
            written, failed = score_with_ray(
                args.paths, loader, [h.name for h in handles], args.out, settings, options,
                args.max_pixels, progress=bar.update,
            )  # fmt: skip
        except RayEngineError as exc:
            raise UsageError(str(exc)) from None
    _say(args, f"wrote {written} records to {args.out} ({failed} errors); records already there "
               "were kept")  # fmt: skip
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr homogeneity


def add_homogeneity(commands: Commands) -> None:
    homogeneity = _command(commands, "homogeneity", "GLCM homogeneity of images (the paper's H)")
    homogeneity.add_argument("paths", nargs="+", metavar="PATH")
    _add_output(homogeneity, "homogeneity records")
    homogeneity.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS)
    homogeneity.set_defaults(run=cmd_homogeneity)


def cmd_homogeneity(args: argparse.Namespace) -> int:
    from aedr.measure.homogeneity import glcm_homogeneity
    from aedr.measure.images import ImageError, iter_image_files, read_image
    from aedr.measure.record import display_path

    failed = 0
    with _writer(args.out, ("path", "homogeneity", "error"), args.overwrite) as writer:
        for path in _progress(iter_image_files(args.paths), args.quiet):
            record: dict[str, Any] = {"path": display_path(path), "homogeneity": None, "error": ""}
            try:
                record["homogeneity"] = glcm_homogeneity(read_image(path, args.max_pixels).gray)
            except (ImageError, ValueError) as exc:
                record["error"] = str(exc)
                failed += 1
            writer.write(record)
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr calibrate


def add_calibrate(commands: Commands) -> None:
    calibrate = _command(commands, "calibrate", "fit a model's threshold from images it made")
    details = _advanced(calibrate, "calibration details")
    calibrate.add_argument(
        "paths", nargs="*", metavar="PATH", help="images the model made (measured with --model)"
    )
    calibrate.add_argument(
        "--scores",
        help="measurement records (.jsonl/.csv/Parquet) of images the model made; a CSV with "
        "loss1, loss2, homogeneity columns also works, with --assume-settings",
    )
    calibrate.add_argument("--model", help="the model: filters --scores, or measures PATHS")
    calibrate.add_argument("--out", help="calibration JSON to write (or --add, or both)")
    calibrate.add_argument(
        "--add",
        action="store_true",
        help="keep it in the calibration library, where `aedr attribute` finds it before one "
        "built from the autoencoder",
    )
    calibrate.add_argument("--overwrite", action="store_true")
    _add_sign_key(details, "the calibration")
    calibrate.add_argument(
        "--reference-photos",
        metavar="DIR",
        help="generator-free: make belonging images with the model's decoder from these photos",
    )
    calibrate.add_argument(
        "--synthetic", type=_positive, default=100, help="with --reference-photos: images to make"
    )
    details.add_argument("--save-synthetic", metavar="DIR", help="keep the images made")
    calibrate.add_argument(
        "--alpha",
        default=str(DEFAULT_ALPHA),
        help="share of the model's own images allowed above the threshold, or 'auto' "
        "(most accurate on --negatives)",
    )
    calibrate.add_argument(
        "--negatives",
        help="measurement records of images the model did not make (e.g. your real photos, "
        "scored with `aedr score`): kept in the calibration to measure its false acceptance, "
        "and what --alpha auto tunes on",
    )
    details.add_argument(
        "--no-default-negatives",
        dest="default_negatives",
        action="store_false",
        help="do not measure the shipped negative photos (scikit-image's sample photos) with "
        "the model; without them and --negatives, false acceptance is not measured",
    )
    details.add_argument(
        "--assume-settings",
        metavar="KEY=VALUE,...",
        help="with --scores whose records carry no provenance (the authors' loss files, a CSV): "
        "how they were measured, e.g. 'latent=sample,seed=1,alignment=resize,dtype=fp32,"
        "device=cuda' (identity=... names the weights); recorded in the calibration as assumed",
    )
    details.add_argument("--scores-out", help="also save the measurement records of PATHS")
    details.add_argument(
        "--first",
        type=_positive,
        metavar="N",
        help="fit on the first N images (in input order) only; --paper: 500, as the authors' "
        "cal_threshold.py",
    )
    details.add_argument(
        "--local",
        type=float,
        nargs="?",
        const=DEFAULT_WINDOW,
        metavar="PX",
        help=f"also fit the local-map threshold (aedr localize, the partial verdict) with a "
        f"window of PX pixels (default {DEFAULT_WINDOW}); measures with local maps",
    )
    calibrate.add_argument(
        "--jpeg-qualities",
        type=_qualities,
        default=None,
        metavar="Q,...|none",
        help="fit a threshold for JPEG files at each IJG quality Q, on up to "
        f"{LADDER_IMAGES} of the images re-encoded at Q (the default negatives too, which cap it "
        "on those in colour): attribution applies the nearest quality's threshold to a JPEG "
        "file; default: " + ",".join(map(str, DEFAULT_JPEG_QUALITIES)) + " with the default "
        "negatives and --robust auto, none with --resized-by (give Q for the chain: resized, "
        "then re-encoded); 'none' fits none",
    )
    details.add_argument(
        "--enlargements",
        type=_enlargements,
        default=None,
        metavar="F,...|none",
        help="fit a threshold for images found enlarged by each factor F (above 1, at most "
        f"{MAX_LADDER_ENLARGEMENT:g}), "
        f"on up to {LADDER_IMAGES} of the images enlarged by F and measured as any image is (the default "
        "negatives too, which cap it): attribution applies the nearest factor's to an image "
        "whose enlargement it finds and undoes; default: "
        + ",".join(f"{f:g}" for f in DEFAULT_ENLARGEMENTS)
        + " where the settings look for enlargements; 'none' fits none",
    )
    details.add_argument(
        "--chains",
        type=_chains,
        default=None,
        metavar="F@Q,...|none",
        help="fit a threshold for JPEG files found enlarged by F, then saved at quality Q, on up "
        f"to {LADDER_IMAGES} of the images enlarged by F and re-encoded at Q (the default "
        "negatives too, which cap it): attribution applies the nearest chain's to a JPEG whose "
        "enlargement it finds and undoes; default: "
        + ",".join(f"{f:g}@{q}" for f, q in DEFAULT_CHAINS)
        + " where the calibration fits thresholds for JPEG files and enlargements; 'none' fits none",
    )
    details.add_argument(
        "--jpeg-statistic",
        "--jpeg-method",
        choices=STATISTIC_NAMES,
        metavar="NAME",
        default=None,
        help="the statistic the JPEG thresholds read and JPEG files are decided by (default: ac "
        f"below quality {JPEG_AC_BELOW}, which keeps more of the evidence through recompression, "
        "where --method's measurements allow; --method's elsewhere)",
    )
    _add_statistic(calibrate)
    _add_loading(calibrate)
    _add_settings(calibrate)
    _add_pipeline(calibrate)
    calibrate.set_defaults(run=cmd_calibrate)


def _qualities(text: str) -> tuple[int, ...]:
    """``--jpeg-qualities 95,85,70`` (or ``none``): distinct whole numbers from 1 to 100."""
    from aedr.decide.calibration import check_jpeg_qualities

    if text.strip().lower() == "none":
        return ()
    try:
        qualities = tuple(int(part) for part in text.split(","))
        check_jpeg_qualities(qualities)
    except ValueError:  # not a number, or refused (CalibrationError is a ValueError)
        raise argparse.ArgumentTypeError(
            f"expected 'none' or distinct JPEG qualities from 1 to 100, comma-separated, not "
            f"{text!r}"
        ) from None
    return qualities


def _enlargements(text: str) -> tuple[float, ...]:
    """``--enlargements 1.5,2`` (or ``none``): distinct factors above 1, at most
    :data:`~aedr.decide.calibration.MAX_LADDER_ENLARGEMENT`."""
    from aedr.decide.calibration import check_enlargement_factors

    if text.strip().lower() == "none":
        return ()
    try:
        factors = tuple(float(part) for part in text.split(","))
        check_enlargement_factors(factors)
    except ValueError as exc:  # not a number, or refused (CalibrationError is a ValueError)
        raise argparse.ArgumentTypeError(
            f"expected 'none' or distinct enlargement factors above 1 and at most "
            f"{MAX_LADDER_ENLARGEMENT:g}, comma-separated, not {text!r}"
        ) from exc
    return factors


def _chains(text: str) -> tuple[tuple[float, int], ...]:
    """``--chains 1.5@85`` (or ``none``): distinct (enlargement factor, JPEG quality) pairs."""
    from aedr.decide.calibration import check_chains

    if text.strip().lower() == "none":
        return ()
    try:
        chains = tuple(
            (float(factor), int(quality))
            for factor, quality in (part.split("@") for part in text.split(","))
        )
        check_chains(chains)
    except ValueError as exc:  # not F@Q, or refused (CalibrationError is a ValueError)
        raise argparse.ArgumentTypeError(
            f"expected 'none' or distinct F@Q pairs (an enlargement factor above 1 and at most "
            f"{MAX_LADDER_ENLARGEMENT:g}, then a JPEG quality from 1 to 100), comma-separated, "
            f"not {text!r}"
        ) from exc
    return chains


def cmd_calibrate(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from aedr import workflows
    from aedr.measure.record import MEASUREMENT_FIELDS
    from aedr.records import check_output

    sources = sum(map(bool, (args.scores, args.paths, args.reference_photos)))
    if sources != 1:
        raise UsageError("give one of: image PATHS, --scores FILE, or --reference-photos DIR")
    if not args.out and not args.add:
        raise UsageError("say where the calibration goes: --out FILE, --add (the library), or both")
    key = _signing_key(args)  # a bad key file is refused before any image is measured
    for output in filter(None, (args.out, args.scores_out)):
        check_output(output, args.overwrite)  # before any image is measured
    statistic = _statistic(args)
    negatives = []
    if args.negatives:
        negatives = workflows.read_negatives([args.negatives], args.model, statistic)
    elif args.alpha == "auto" and (args.scores or not args.default_negatives):
        raise UsageError("--alpha auto needs --negatives: measurement records of other images")
    if args.local is not None:
        _check_window(args.local)
    if args.jpeg_statistic and args.jpeg_qualities == ():
        raise UsageError(
            "--jpeg-statistic chooses the statistic of the JPEG thresholds: "
            "--jpeg-qualities none fits none"
        )
    if args.scores:
        if args.local is not None:
            raise UsageError("--local needs images to map: give PATHS or --reference-photos")
        if args.jpeg_qualities:
            raise UsageError("--jpeg-qualities re-encodes images: give PATHS or --reference-photos")
        if args.enlargements:
            raise UsageError("--enlargements enlarges images: give PATHS or --reference-photos")
        if args.chains:
            raise UsageError("--chains enlarges images: give PATHS or --reference-photos")
        given = [flag for name, flag in _setting_flags().items() if getattr(args, name) is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} cannot apply to --scores: the records' provenance says how "
                "they were measured (records without one take --assume-settings)"
            )
        from aedr.records import read_records

        run = workflows.calibrate_measurements(
            read_records(args.scores), args.model, statistic, args.alpha,
            assumed_provenance=_assumed_provenance(args.assume_settings), negatives=negatives,
            first=_first(args),
        )  # fmt: skip
        failed = run.skipped
    else:
        if not args.model:
            raise UsageError("measuring images for calibration needs --model")
        if args.assume_settings:
            raise UsageError("--assume-settings is for --scores records without provenance")
        if args.paths:
            _check_calibration_size(args)
        scorer = _scorer([args.model], args, _settings(args), local_maps=args.local is not None)
        out = (
            _writer(args.scores_out, MEASUREMENT_FIELDS, args.overwrite)
            if args.scores_out
            else None
        )
        bar = _progress_bar(args.quiet)

        def report(measurement) -> None:
            bar.update()
            if out is not None:
                out.write(measurement.as_dict())
            if not measurement.ok:
                _say(args, f"skipped {measurement.path}: {measurement.error}")

        with out or nullcontext(), bar:
            if args.reference_photos:
                run = workflows.calibrate_generator_free(
                    scorer, args.reference_photos, args.synthetic, statistic, args.alpha,
                    seed=0 if args.seed is None else args.seed, save_to=args.save_synthetic,
                    negatives=negatives, default_negatives=args.default_negatives,
                    on_measurement=report, local_window=args.local,
                    jpeg_qualities=args.jpeg_qualities, jpeg_statistic=args.jpeg_statistic,
                    enlargements=args.enlargements, chains=args.chains,
                )  # fmt: skip
            else:
                run = workflows.calibrate_images(
                    scorer, args.paths, statistic, args.alpha,
                    negatives=negatives, default_negatives=args.default_negatives,
                    on_measurement=report, first=_first(args), local_window=args.local,
                    jpeg_qualities=args.jpeg_qualities, jpeg_statistic=args.jpeg_statistic,
                    enlargements=args.enlargements, chains=args.chains,
                )  # fmt: skip
        failed = len(run.failed)
    calibration = run.calibration
    if key is not None:
        calibration.sign(key)
    if args.out:
        calibration.save(args.out, overwrite=args.overwrite)
    if args.add:
        from aedr.library import CalibrationLibrary, own_provenance

        added = CalibrationLibrary().add(calibration, own_provenance(calibration), "own")
        _say(args, f"added to the calibration library: {added}")
    tuned = calibration.tuning
    if "chosen_alpha" in tuned:
        _say(args, f"alpha auto: {tuned['chosen_alpha']} (tuning accuracy "
                   f"{tuned['tuning_accuracy']:.4f})")  # fmt: skip
    _say(
        args,
        f"{calibration.model}: {calibration.statistic} threshold {calibration.threshold:.6g} at "
        f"alpha {calibration.alpha} from {calibration.n} images ({failed} skipped)"
        + (f" -> {args.out}" if args.out else ""),
    )
    if calibration.negatives:
        kept = calibration.negatives
        _say(args, f"false acceptance {calibration.false_acceptance:.1%} of {kept['n']} "
                   f"negatives ({'; '.join(kept['sources'])})"
                   + "".join(f"; {kind} {share:.1%} of {n}"
                             for kind, (share, n) in calibration.false_acceptance_by_kind.items()))  # fmt: skip
    if calibration.local:
        local = calibration.local
        _say(args, f"local threshold {local['threshold']:.4g} (window {local['window']:g} px) "
                   f"from {local['n_values']} map values of {local['n_images']} images")  # fmt: skip
    views = [(f"JPEG q={q}", calibration.at_jpeg_quality(q)) for q in calibration.jpeg_qualities]
    views += [(f"enlarged x{f:g}", calibration.at_enlargement(f))
              for f in calibration.enlargement_factors]  # fmt: skip
    views += [(f"enlarged x{f:g}, then JPEG q={q}", calibration.at_chain(f, q))
              for f, q in calibration.chain_steps]  # fmt: skip
    views += [("grey images", calibration.at_grey(True))] if calibration.grey else []
    for condition, view in views:
        accepted = view.negatives_like(False).false_acceptance  # the images it decides
        _say(args, f"{condition}: {view.statistic} threshold {view.threshold:.6g} from "
                   f"{view.n} images"
                   + ("" if accepted is None else f", false acceptance {accepted:.1%}"))  # fmt: skip
    if "enlargement_thresholds" in calibration.tuning:
        _say(args, f"enlarged images: {calibration.tuning['enlargement_thresholds']}")
    if "chain_thresholds" in calibration.tuning:
        _say(args, f"JPEG files found enlarged: {calibration.tuning['chain_thresholds']}")
    if "grey_thresholds" in calibration.tuning:
        _say(args, f"grey images: {calibration.tuning['grey_thresholds']}")
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


def _check_calibration_size(args: argparse.Namespace) -> None:
    """Refuse fewer than 2 images before measuring any; warn below the number at which a
    threshold is stable (``STABLE_CALIBRATION_IMAGES``, measured: docs/results/zero-setup.md)."""
    from aedr.decide.calibration import STABLE_CALIBRATION_IMAGES
    from aedr.measure.images import iter_image_files

    count = sum(1 for _ in iter_image_files(args.paths))
    if count < 2:
        raise UsageError(
            f"found {count} image file{'s' if count != 1 else ''} in {', '.join(args.paths)}: a "
            f"threshold needs at least 2 images the model made, and is stable from about "
            f"{STABLE_CALIBRATION_IMAGES}"
        )
    if count < STABLE_CALIBRATION_IMAGES:
        _say(args, f"warning: {count} images: a threshold fitted on fewer than "
                   f"{STABLE_CALIBRATION_IMAGES} moves a lot with which images they are "
                   "(docs/results/zero-setup.md); add images the model made if you can")  # fmt: skip


def _check_window(window: float) -> None:
    from aedr.measure.evidence import check_window

    try:
        check_window(window)
    except ValueError as exc:
        raise UsageError(f"--window/--local: {exc}") from None


def _first(args: argparse.Namespace) -> int | None:
    from aedr.workflows import PAPER_CALIBRATION_IMAGES

    if args.first is None and args.paper:
        return PAPER_CALIBRATION_IMAGES
    return args.first


def _assumed_provenance(text: str | None):
    """The Provenance that ``--assume-settings KEY=VALUE,...`` states (None when not given)."""
    if not text:
        return None
    from aedr import __version__
    from aedr.decide.calibration import UNVERIFIED_IDENTITY
    from aedr.measure.provenance import PACKAGE_FIELD, VERSION_FIELD, Provenance
    from aedr.schemas import provenance_schema

    keys = [
        name
        for name in provenance_schema().model_fields
        if name not in (VERSION_FIELD, PACKAGE_FIELD)
    ]
    values: dict[str, Any] = {"identity": UNVERIFIED_IDENTITY, PACKAGE_FIELD: __version__}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise UsageError(
                f"--assume-settings: {item!r} is not KEY=VALUE with KEY one of {', '.join(keys)}"
            )
        values[key] = value or None
    return Provenance.from_dict(values, "--assume-settings", from_text=True)


# ---------------------------------------------------------------------------------------------
# aedr attribute


def add_attribute(commands: Commands) -> None:
    attribute = _command(
        commands, "attribute", "which candidate model made each image: a verdict per image"
    )
    attribute.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    attribute.add_argument(
        "--model",
        action="append",
        metavar="MODEL",
        help="a candidate (registry name, hub id or path), decided by the calibration library's "
        "calibration, built from its autoencoder the first time; repeatable (default: every "
        "registry model whose weights are on this machine)",
    )
    _add_calibrations(attribute, required=False)
    attribute.add_argument(
        "--out", help="records file, .jsonl or .csv (default: a table on stdout)"
    )
    attribute.add_argument(
        "--format",
        choices=("table", "jsonl", "csv"),
        help="what stdout gets without --out: table (default), jsonl or csv (for pipes)",
    )
    attribute.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file"
    )
    attribute.add_argument(
        "--paper",
        action="store_true",
        help="load the models as the authors did (--dtype paper, codebook decoding for VQ); "
        "the scoring settings always come from the calibrations",
    )
    _add_settings(attribute, only=CORRECTIONS, robust_default=ROBUST_FROM_CALIBRATIONS)
    _add_loading(attribute)
    _add_pipeline(attribute)
    attribute.set_defaults(run=cmd_attribute)


def _attributor(args: argparse.Namespace):
    """The attributor of the command's candidates: the ``--calibration`` files with their
    models, or else the library's calibrations of ``--model`` (every registry model with local
    weights when none is named), built where missing."""
    from aedr.attributor import Attributor

    pipeline = _pipeline(args)
    if getattr(args, "calibration", None):
        if getattr(args, "model", None):
            raise UsageError("give --calibration files or --model names, not both")
        calibrations = [Calibration.load(path) for path in args.calibration]
        sources = {c.model: ("file", str(path)) for c, path in zip(calibrations, args.calibration,
                                                                   strict=True)}  # fmt: skip
        models = _models([c.model for c in calibrations], args)
    else:
        calibrations, models, sources = _library_candidates(args, pipeline)
    _trusted(args, calibrations, [sources[c.model][1] for c in calibrations])
    return Attributor(
        calibrations, models, **pipeline, max_false_attribution=args.max_false_attribution,
        robust=args.robust, resized_by=args.resized_by, enlargement=args.enlargement,
        sources=sources,
    )  # fmt: skip


def _library_candidates(args: argparse.Namespace, pipeline: dict[str, Any]):
    """(calibrations, models, sources) of the zero set-up path: the library's calibration of
    each candidate, built from its autoencoder where there is none."""
    from dataclasses import replace

    from aedr import library as calibration_library
    from aedr.library import (
        CalibrationLibrary,
        available_models,
        library_calibrations,
        own_on_every_pixel,
    )
    from aedr.measure.scorer import Scorer
    from aedr.measure.settings import EVERY_PIXEL, ScoreSettings

    names = args.model
    if not names:
        names = available_models(args.weights_dir)
        if not names:
            raise UsageError(
                "no candidate models: none named, and no registry model's weights are on this "
                "machine; name one with --model NAME (a registry name from `aedr models`, "
                "downloaded once from the hub, or a local path), or give --weights-dir DIR"
            )
        _say(args, f"candidates: {', '.join(names)} (every registry model with weights here)")
    models = _models(names, args)
    settings = ScoreSettings(robust=args.robust)
    scorers = [Scorer([m], settings, **pipeline) for m in models]
    library = CalibrationLibrary()
    older = own_on_every_pixel(scorers, library)
    if older:
        _say(args, f"your own calibration of {', '.join(older)} was measured on every pixel (made "
                   "before aedr 0.12): this run measures every pixel too, as it was made; "
                   f"calibrate again to measure without a {settings.border} px border")  # fmt: skip
        settings = replace(settings, border=EVERY_PIXEL)
        scorers = [Scorer([m], settings, **pipeline) for m in models]
    count = calibration_library.BUILT_IMAGES
    with _progress_bar(args.quiet) as bar:

        def building(name: str) -> None:
            _say(args, f"building the calibration of {name} from its autoencoder (first use: "
                       f"{count} decoder-made images, the default negatives) ...")  # fmt: skip

        found = library_calibrations(
            scorers, library, count=count, on_building=building,
            on_built=lambda name, c: _say(args, f"built {name} ({c.n} images) in {library.folder}"),
            on_damaged=lambda message: _say(args, message),
            on_measurement=lambda measurement: bar.update(),
        )  # fmt: skip
    calibrations = [calibration for calibration, _ in found]
    sources = {c.model: (source.origin, source.name) for c, source in found}
    return calibrations, models, sources


ORIGIN_WORDS = {"own": "your images", "built": "built from the autoencoder", "file": "file"}
SHOWN_FAILURES = 5


def cmd_attribute(args: argparse.Namespace) -> int:
    import contextlib
    from collections import Counter

    from aedr.decide.attribution import ATTRIBUTION_FIELDS

    fmt = args.format or ("table" if not args.out else None)
    if args.out and args.format:
        raise UsageError("--format chooses what stdout gets; with --out the file's suffix does")
    attributor = _attributor(args)
    verdicts: Counter[str] = Counter()
    failures: list[str] = []
    table = _VerdictTable() if fmt == "table" else None
    writer = None if table else _writer(args.out, ATTRIBUTION_FIELDS, args.overwrite, fmt=fmt)
    with writer or contextlib.nullcontext():
        # a table's lines are its progress: no bar beside them
        decided = _progress(attributor.attribute_paths(args.paths), args.quiet or bool(table))
        for attribution in decided:
            if table is not None:
                table.add(attribution)
            if writer is not None:
                for row in attribution.rows():
                    writer.write(row)
            errors = [d.error for d in attribution.decisions if d.error]
            if errors:
                failures.append(f"{attribution.path}: {attribution.error or errors[0]}")
            verdicts[attribution.verdict or "error"] += 1
    if not verdicts:
        raise UsageError(_no_images(args.paths))
    family = attributor.false_attribution
    stated = "false attribution: " + (family.describe() if family else "not measured "
                                       "(calibrations without negatives)")  # fmt: skip
    if table is not None:
        table.footer(attributor, stated)
    else:
        _say(args, "verdicts: " + ", ".join(f"{k}={v}" for k, v in sorted(verdicts.items())))
        _say(args, stated)
    for failure in failures[:SHOWN_FAILURES]:
        print(f"failed: {failure}", file=sys.stderr)
    if len(failures) > SHOWN_FAILURES:
        print(f"failed: and {len(failures) - SHOWN_FAILURES} more (see their rows)",
              file=sys.stderr)  # fmt: skip
    _hint(args, failures)
    return EXIT_INPUT_ERRORS if failures else EXIT_OK


class _VerdictTable:
    """The verdicts as a person reads them: a line per image on stdout as it is decided, then
    the candidates and the stated false-attribution rate."""

    COLUMNS = (("file", 46), ("verdict", 10), ("confidence", 21), ("closest", 10),
               ("p-value", 8), ("caution", 0))  # fmt: skip

    def __init__(self) -> None:
        self.header = False

    def _line(self, cells: Sequence[str]) -> str:
        parts = []
        for (_, width), cell in zip(self.COLUMNS, cells, strict=True):
            if width and len(cell) > width - 1:
                cell = "…" + cell[-(width - 2) :]
            parts.append(cell.ljust(width) if width else cell)
        return "".join(parts).rstrip()

    def add(self, attribution) -> None:
        if not self.header:
            print(self._line([name for name, _ in self.COLUMNS]), flush=True)
            self.header = True
        scored = [d for d in attribution.decisions if d.p_value is not None and not d.error]
        closest = max(scored, key=lambda d: d.p_value, default=None)
        p_value = "" if closest is None else closest.p_value_text
        caution = attribution.error or attribution.caution.split(":")[0]
        cells = [attribution.path, attribution.verdict or "error", attribution.confidence,
                 closest.model if closest else "", p_value, caution]  # fmt: skip
        print(self._line(cells), flush=True)

    def footer(self, attributor, stated: str) -> None:
        print()
        for model, calibration in attributor.calibrations.items():
            origin, name = attributor.sources.get(model, ("file", ""))
            print(f"candidate {model}: {calibration.statistic} calibration "
                  f"{ORIGIN_WORDS.get(origin, origin)} ({calibration.n} images, alpha "
                  f"{calibration.alpha:g}; {name})")  # fmt: skip
        print(stated)


# ---------------------------------------------------------------------------------------------
# aedr localize


def add_localize(commands: Commands) -> None:
    localize = _command(
        commands, "localize", "map where in each image a model's decoder wrote (partial edits)"
    )
    localize.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    localize.add_argument(
        "--model", action="append", metavar="MODEL", help="model to map with; repeatable"
    )
    localize.add_argument(
        "--calibration",
        action="append",
        metavar="CALIB",
        help="calibration JSON (from `aedr calibrate --local` for a threshold and regions); "
        "repeatable; its model is mapped, measured with its settings",
    )
    _add_trust_key(localize)
    localize.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the maps and localize.jsonl"
    )
    localize.add_argument("--overwrite", action="store_true", help="replace DIR/localize.jsonl")
    localize.add_argument(
        "--window",
        type=float,
        metavar="PX",
        help=f"map window in pixels (default: the calibration's, else {DEFAULT_WINDOW})",
    )
    _add_loading(localize)
    _add_settings(localize)
    _add_pipeline(localize)
    localize.set_defaults(run=cmd_localize, statistic=None)


def _localize_scorer(args: argparse.Namespace):
    """The scorer (keeping local maps) and calibrations by model of ``localize``'s flags."""
    from aedr.attributor import Attributor

    if not args.calibration:
        if not args.model:
            raise UsageError("give --model MODEL or --calibration CALIB")
        return _scorer(args.model, args, _settings(args), local_maps=True), {}
    given = [flag for name, flag in _setting_flags().items() if getattr(args, name) is not None]
    if given or args.paper:
        raise UsageError(
            f"{', '.join(given or ['--paper'])}: with --calibration the calibrations' settings "
            "decide how images are measured"
        )
    calibrations = [Calibration.load(path) for path in args.calibration]
    _trusted(args, calibrations, args.calibration)
    names = [c.model for c in calibrations]
    if args.model and sorted(args.model) != sorted(names):
        raise UsageError(
            f"--model {' '.join(args.model)} differs from the calibrations' models "
            f"({' '.join(names)}): give one or the other"
        )
    attributor = Attributor(calibrations, _models(names, args), **_pipeline(args), local_maps=True)
    return attributor.scorer, attributor.calibrations


def _map_name(path: str, model: str, used: set[str]) -> str:
    """``<stem>.<model>``, made safe for a file name and unique within the run."""
    import re
    from pathlib import Path

    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(path).stem}.{model}").strip("._") or "map"
    name, count = base, 1
    while name in used:
        count += 1
        name = f"{base}-{count}"
    used.add(name)
    return name


def cmd_localize(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from aedr import workflows
    from aedr.decide.report import plot_local_map
    from aedr.measure.images import ImageError, read_image
    from aedr.records import check_output

    if args.window is not None:
        _check_window(args.window)
    folder = Path(args.out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} exists and is not a folder")
    records_path = folder / "localize.jsonl"
    if folder.is_dir():
        check_output(records_path, args.overwrite)
    scorer, calibrations = _localize_scorer(args)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {folder}: {exc.strerror or exc}") from None
    fields = (*workflows.LOCALIZATION_FIELDS, "map", "heatmap")
    exif = scorer.settings.exif != "ignore"
    used: set[str] = set()
    failed = count = 0
    decoded: tuple[str, Any] = ("", None)  # the last image drawn: its models come in a row
    results = workflows.localize_images(scorer, args.paths, calibrations, args.window)
    with _writer(str(records_path), fields, args.overwrite) as writer:
        for result in _progress(results, args.quiet):
            count += 1
            row = {**result.row(), "map": "", "heatmap": ""}
            if result.statistic is not None:
                name = _map_name(row["path"], row["model"], used)
                with replacing(folder / f"{name}.npy", "wb") as stream:
                    np.save(stream, result.statistic)
                row["map"] = f"{name}.npy"
                try:
                    if decoded[0] != result.measurement.path:
                        image = read_image(result.measurement.path, args.max_pixels, exif)
                        decoded = (result.measurement.path, image.rgb)
                    rgb = decoded[1]
                    title = f"{Path(row['path']).name}: {row['model']}, verdict {row['verdict'] or 'uncalibrated'}"
                    plot_local_map(rgb, result.statistic, folder / f"{name}.png", title,
                                   result.threshold, result.regions)  # fmt: skip
                    row["heatmap"] = f"{name}.png"
                except (ImageError, OSError) as exc:  # the file changed since it was measured
                    row["error"] = row["error"] or f"heatmap not drawn: {exc}"
            failed += bool(row["error"])
            writer.write(row)
    if not count:
        raise UsageError(_no_images(args.paths))
    _say(args, f"{count} maps ({failed} with errors) -> {folder}")
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr serve


def add_serve(commands: Commands) -> None:
    serve = _command(
        commands, "serve", "web page and JSON API for attribution (needs the web extra)"
    )
    _add_calibrations(serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback only; any other needs $AEDR_TOKEN)",
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name the server answers to besides loopback names (a reverse proxy's); "
        "repeatable. Requests naming any other host get 421 (DNS-rebinding guard)",
    )
    serve.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a foreign origin (https://host:port) whose pages may POST here; repeatable. Other "
        "cross-origin POSTs get 403",
    )
    serve.add_argument(
        "--max-upload-mb", type=float, default=50, help="largest accepted image file (default 50)"
    )
    serve.add_argument(
        "--max-files", type=_positive, default=32, help="most images in one request (default 32)"
    )
    serve.add_argument(
        "--max-request-mb",
        type=float,
        default=100,
        help="largest request, all its images together (default 100; held in memory)",
    )
    from aedr.limits import Limits

    limits = Limits()
    serve.add_argument(
        "--max-pending",
        type=_positive,
        default=limits.max_pending,
        help="uploads received or waiting for the model at once; more get 503 "
        f"(default {limits.max_pending}; each may hold --max-request-mb in memory)",
    )
    serve.add_argument(
        "--keep-days",
        type=_positive_float,
        default=limits.keep_days,
        help=f"delete results this many days after they were made (default {limits.keep_days:g})",
    )
    serve.add_argument(
        "--hashes-only",
        action="store_true",
        help="keep each result with the file's hashes and facts but not the image itself (for "
        "sensitive material: permanent links then show no picture)",
    )
    _add_sign_key(_advanced(serve, "signatures"), "each result (its case record)")
    _add_settings(serve, only=CORRECTIONS, robust_default=ROBUST_FROM_CALIBRATIONS)
    _add_loading(serve)
    _add_pipeline(serve)
    serve.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import contextlib
    import os

    try:
        from aedr.limits import Limits
        from aedr.server import TOKEN_ENV, Access, AttributionService, needs_token, serve
    except ImportError as exc:
        raise UsageError(
            f"aedr serve needs the web extra: pip install 'aedr[web]' ({exc})"
        ) from None
    token = os.environ.get(TOKEN_ENV) or None
    if needs_token(args.host) and not token:
        raise UsageError(
            f"binding {args.host} exposes the service beyond this machine: set {TOKEN_ENV} to a "
            "secret token, which every API call must then send"
        )
    if min(args.max_upload_mb, args.max_request_mb, args.max_files) <= 0:
        raise UsageError("--max-upload-mb, --max-request-mb and --max-files must be positive")
    limits = Limits(
        int(args.max_upload_mb * 2**20), args.max_files, args.max_pixels,
        int(args.max_request_mb * 2**20), max_pending=args.max_pending, keep_days=args.keep_days,
        keep_images=not args.hashes_only,
    )  # fmt: skip
    key = _signing_key(args)
    service = AttributionService(_attributor(args), limits, key)
    _say(args, f"aedr serve: http://{args.host}:{args.port}/ (API docs at /docs; results kept "
               f"{args.keep_days:g} days, " + ("without" if args.hashes_only else "with")
               + " their images)")  # fmt: skip
    access = Access.for_bind(args.host, token, args.allowed_host, args.allowed_origin)
    with contextlib.suppress(KeyboardInterrupt):  # the signal that stopped it, raised again
        serve(service, access, args.host, args.port, "warning" if args.quiet else "info")
    _say(args, "aedr serve: stopped")
    if service.abandoned:  # a scoring thread is still running: end without waiting for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr evaluate


def add_evaluate(commands: Commands) -> None:
    evaluate = _command(
        commands, "evaluate", "accuracy tables, ROC metrics, plots and an HTML report"
    )
    evaluate.add_argument(
        "--scores", nargs="+", required=True, metavar="FILE",
        help="measurement records (.jsonl/.csv/Parquet)",
    )  # fmt: skip
    evaluate.add_argument(
        "--labels", required=True, help="CSV/JSONL with path and label (a model name or 'real')"
    )
    evaluate.add_argument(
        "--calibration",
        nargs="+",
        default=[],
        metavar="CALIB",
        help="thresholds to evaluate; a model without one is fitted on half of its own images",
    )
    _add_statistic(evaluate)
    evaluate.add_argument(
        "--paper", action="store_true", help="the paper's statistic (aedr) unless --method"
    )
    evaluate.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"for fitted thresholds (default {DEFAULT_ALPHA})",
    )
    evaluate.add_argument(
        "--max-false-attribution",
        type=float,
        metavar="RATE",
        help="first lower the given calibrations' thresholds as `aedr attribute` does",
    )
    evaluate.add_argument("--out", required=True, help="folder for report.html, CSV, JSON, PNG")
    evaluate.add_argument("--overwrite", action="store_true")
    evaluate.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="exit 0 although some records have no label (they are left out either way)",
    )
    evaluate.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aedr.decide.evaluation import mean_table, open_set_metrics
    from aedr.workflows import evaluate_files

    if (Path(args.out) / "report.html").exists() and not args.overwrite:
        raise UsageError(f"{args.out}/report.html exists; pass --overwrite to replace it")
    result, report = evaluate_files(
        args.scores, args.labels, args.out, args.calibration, _statistic(args), args.alpha,
        args.max_false_attribution,
    )  # fmt: skip
    for name, row in mean_table(result).items():
        print(
            f"{name}: accuracy vs models {row['vs_models']:.4f}, vs real {row['vs_real']:.4f}, "
            f"ROC AUC {row['auc']:.4f}"
        )
    if result.confusion:
        numbers = open_set_metrics(result.confusion)
        print(f"verdicts ({numbers['images']} images): accuracy {numbers['verdict_accuracy']:.4f}, "
              f"real attributed {numbers['real_false_attribution']:.4f}, "
              f"own recall {numbers['own_recall']:.4f}")  # fmt: skip
    _say(args, f"report: {report}")
    if result.unlabelled:
        count = "1 record has" if result.unlabelled == 1 else f"{result.unlabelled} records have"
        advice = "" if args.allow_unlabelled else " (label them, or pass --allow-unlabelled)"
        print(f"aedr evaluate: {count} no label, left out{advice}", file=sys.stderr)
        return EXIT_OK if args.allow_unlabelled else EXIT_INPUT_ERRORS
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr reproduce


def add_reproduce(commands: Commands) -> None:
    reproduce = _command(
        commands, "reproduce", "the paper's Tables 1-3 on real autoencoders, beside its numbers"
    )
    reproduce.add_argument(
        "folder", help="one folder per source: the paper's names (SD1.5/, ..., VQDM/) or registry "
        "names, and Real/",
    )  # fmt: skip
    reproduce.add_argument("--out", help="also write tables.md and metrics.json into this folder")
    reproduce.add_argument("--weights-dir", help="folder searched for local weights before the hub")
    reproduce.add_argument("--device", default="auto", help="torch device (default auto)")
    reproduce.add_argument(
        "--generate", type=int, metavar="N",
        help="first make N images per model with its diffusers pipeline into FOLDER/<model>/ "
        "(the generate extra and the hub; --prompts), for the models in --models",
    )  # fmt: skip
    reproduce.add_argument("--prompts", help="with --generate: a text file, one prompt per line")
    reproduce.add_argument(
        "--models", default=",".join(_paper_models()),
        help="with --generate: comma-separated paper names (default: all eight)",
    )  # fmt: skip
    reproduce.add_argument(
        "--random-weights", action="store_true",
        help="the published architectures with seeded random weights (a dry run, no download)",
    )  # fmt: skip
    reproduce.set_defaults(run=cmd_reproduce)


def _paper_models() -> list[str]:
    from aedr.reproduction import PAPER_MODELS

    return list(PAPER_MODELS)


def cmd_reproduce(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from aedr.reproduction import PAPER_MODELS, generate_images, reproduce

    device = args.device  # "auto" resolved by main
    if args.generate is not None:
        if args.generate < 1 or not args.prompts:
            raise UsageError("--generate needs N of at least 1 and --prompts FILE")
        try:
            prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--prompts: cannot read {args.prompts}: {exc}") from None
        names = [name for name in args.models.split(",") if name]
        unknown = [name for name in names if name not in PAPER_MODELS]
        if unknown:
            raise UsageError(f"--models: not paper models: {', '.join(unknown)}")
        for name in names:
            _say(args, f"generating {args.generate} images with {name}")
            generate_images(PAPER_MODELS[name], [p for p in prompts if p], args.generate,
                            Path(args.folder) / name, device=device)  # fmt: skip
    run = reproduce(
        args.folder, weights_dir=args.weights_dir, device=device,
        random_weights=args.random_weights, progress=lambda text: _say(args, text),
    )  # fmt: skip
    tables = run.markdown()
    print(tables, end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "tables.md", tables)
        metrics = {mode: result.summary() for mode, result in run.results.items()}
        write_atomic(out / "metrics.json", json.dumps(
            {"tables": run.tables(), "seconds": run.seconds, "results": metrics}, indent=2,
            default=str))  # fmt: skip
        _say(args, f"wrote {out / 'tables.md'} and {out / 'metrics.json'}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr models


def add_models(commands: Commands) -> None:
    models = _command(commands, "models", "list the model registry, or check that models run")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument("--weights-dir", help="also report local weights found here")
    models.add_argument(
        "--check",
        nargs="+",
        metavar="MODEL",
        help="load these models (cache or weights dir) and time encode/decode at --size",
    )
    models.add_argument(
        "--random-weights",
        action="store_true",
        help="with --check: build the published architecture with random weights (no download)",
    )
    models.add_argument("--size", type=_positive, default=256, help="image side for --check")
    models.add_argument("--device", default="auto", help="torch device (default auto)")
    _add_dtype(models)
    models.set_defaults(run=cmd_models)


def _print_table(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> None:
    """Aligned plain-text columns: ``columns`` maps row keys to headers."""
    table = [tuple(columns.values())] + [
        tuple("" if row[key] is None else str(row[key]) for key in columns) for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def cmd_models(args: argparse.Namespace) -> int:
    from aedr.autoencoders import find_local_weights, list_models

    if args.check:
        return _check_models(args)
    rows = [
        {
            **spec.facts(),
            "cpu_dtype": spec.default_dtype("cpu"),
            "local_weights": str(find_local_weights(spec, args.weights_dir) or ""),
        }
        for spec in list_models()
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return EXIT_OK
    _print_table(
        rows,
        {
            "name": "name", "diffusers_class": "class", "latent_channels": "ch",
            "spatial_factor": "factor", "size_multiple": "multiple", "gpu_dtype": "gpu dtype",
            "cpu_dtype": "cpu dtype here",
            "group": "group", "gated": "gated", "source": "source",
            "local_weights": "local weights",
        },
    )  # fmt: skip
    return EXIT_OK


def _check_models(args: argparse.Namespace) -> int:
    """Load each named model (cache, weights dir or random weights) and time it at --size.

    A model that cannot be loaded gets a row with its error; the others are still checked.
    """
    from aedr.autoencoders import ModelUnavailableError, create_autoencoder
    from aedr.autoencoders.check import check_autoencoder

    results: list[dict[str, Any]] = []
    for name in args.check:
        start = time.perf_counter()
        try:
            autoencoder = create_autoencoder(
                name, args.weights_dir, args.device, args.dtype, random_weights=args.random_weights
            )
        except ModelUnavailableError as exc:
            results.append({"model": name, "finite": False, "error": str(exc)})
            continue
        load_seconds = round(time.perf_counter() - start, 2)
        result = check_autoencoder(autoencoder, args.size).as_dict()
        results.append({**result, "load_s": load_seconds, "error": ""})
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        columns = {
            "model": "model", "device": "device", "dtype": "dtype", "size": "size",
            "load_s": "load s", "encode_ms": "encode ms", "decode_ms": "decode ms",
            "finite": "finite", "ratio": "ratio", "identity": "identity", "error": "error",
        }  # fmt: skip
        rounded = [
            {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row.items()}
            for row in results
        ]
        _print_table([{k: row.get(k) for k in columns} for row in rounded], columns)
    return EXIT_OK if all(row["finite"] for row in results) else EXIT_INPUT_ERRORS


# ---------------------------------------------------------------------------------------------
# aedr calibrations


def add_calibrations(commands: Commands) -> None:
    library = _command(
        commands, "calibrations", "list, show or remove the calibration library's calibrations"
    )
    library.add_argument(
        "action", nargs="?", choices=("list", "show", "remove"), default="list",
        help="list (default), show NAME, or remove NAME",
    )  # fmt: skip
    library.add_argument("name", nargs="?", metavar="NAME", help="a calibration's file name")
    library.set_defaults(run=cmd_calibrations)


def cmd_calibrations(args: argparse.Namespace) -> int:
    from aedr.library import CalibrationLibrary

    library = CalibrationLibrary()
    if args.action == "list":
        entries = library.entries()
        if not entries:
            print(f"no calibrations in {library.folder} yet: `aedr attribute` builds them, "
                  "`aedr calibrate ... --add` adds yours")  # fmt: skip
            return EXIT_OK
        _print_table(
            [{"name": e.name, "model": e.model, "statistic": e.statistic,
              "origin": ORIGIN_WORDS[e.origin]} for e in entries],
            {"name": "name", "model": "model", "statistic": "statistic", "origin": "made from"},
        )  # fmt: skip
        print(f"({len(entries)} in {library.folder}; the first of a model and statistic decides)")
        return EXIT_OK
    if not args.name:
        raise UsageError(f"calibrations {args.action} needs NAME (see `aedr calibrations list`)")
    if args.action == "remove":
        _say(args, f"removed {library.remove(args.name)}")
        return EXIT_OK
    entry = library.entry(args.name)
    calibration = Calibration.load(entry.path)
    summary = {
        "file": str(entry.path), "model": calibration.model, "made from": ORIGIN_WORDS[entry.origin],
        "statistic": calibration.statistic, "threshold": calibration.threshold,
        "alpha": calibration.alpha, "images": calibration.n,
        "belonging images": calibration.tuning.get("belonging_images", "the model's images"),
        "false acceptance": calibration.false_acceptance,
        **{f"false acceptance, {kind}": share
           for kind, (share, _) in calibration.false_acceptance_by_kind.items()},
        "created": calibration.created,
        "identity": calibration.provenance.get("identity"),
        "thresholds for JPEG qualities": {
            str(q): calibration.at_jpeg_quality(q).threshold for q in calibration.jpeg_qualities
        },
        "thresholds for enlargements": {
            f"x{f:g}": calibration.at_enlargement(f).threshold
            for f in calibration.enlargement_factors
        },
        "thresholds for JPEG files found enlarged": {
            f"x{f:g} then q={q}": calibration.at_chain(f, q).threshold
            for f, q in calibration.chain_steps
        },
        "threshold for grey images": calibration.grey.get("threshold"),
    }  # fmt: skip
    json.dump(summary, sys.stdout, indent=2)
    print()
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# aedr demo


def add_demo(commands: Commands) -> None:
    demo = _command(
        commands, "demo", "attribute built-in examples with zero set-up, as `attribute` does"
    )
    demo.add_argument("--workdir", default="aedr-demo", help="where the example images are written")
    demo.add_argument("--model", default="taesd", help="autoencoder to demonstrate (default taesd)")
    demo.add_argument("--weights-dir", help="folder of local weights (default $AEDR_WEIGHTS_DIR)")
    demo.add_argument("--device", default="auto", help="torch device (default auto)")
    demo.set_defaults(run=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the examples, then run ``aedr attribute WORKDIR/test --model MODEL`` itself."""
    from pathlib import Path

    from aedr.demo import write_examples

    examples = write_examples(Path(args.workdir), args.model, args.weights_dir, args.device)
    _say(args, f"wrote {len(examples.generated)} images {args.model}'s decoder made and "
               f"{len(examples.real)} photos under {examples.test} (and "
               f"{len(examples.calibration)} more of the decoder's in {args.workdir}/calibration)")  # fmt: skip
    command = ["attribute", str(examples.test), "--model", args.model, "--device", args.device]
    if args.weights_dir:
        command += ["--weights-dir", args.weights_dir]
    _say(args, "$ aedr " + " ".join(command))
    attribute = build_parser().parse_args([*command, *(["-q"] if args.quiet else [])])
    attribute.resources = args.resources
    code = cmd_attribute(attribute)
    print(f"\nnext: aedr attribute YOUR-IMAGES/ --model {args.model}  (or with no --model: every "
          "model whose weights are on this machine)")  # fmt: skip
    return code


# ---------------------------------------------------------------------------------------------
# parser and entry point

# ---------------------------------------------------------------------------------------------
# aedr keys, aedr verify


def add_keys(commands: Commands) -> None:
    keys = _command(commands, "keys", "make a key pair to sign calibrations and case records")
    keys.add_argument("name", metavar="NAME", help="writes NAME.key (private, 0600) and NAME.pub")
    keys.set_defaults(run=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    from aedr.seals import create_keys, load_public_key

    private, public = create_keys(args.name)
    key_id = load_public_key(public).key_id
    _say(args, f"wrote {private} (keep it private) and {public} (key {key_id}: give it to "
               "whoever checks what you sign)")  # fmt: skip
    return EXIT_OK


def add_verify(commands: Commands) -> None:
    verify = _command(commands, "verify", "check the seals of calibrations and case records")
    verify.add_argument("files", nargs="+", metavar="FILE",
                        help="calibration JSON, or case records JSON from aedr serve")  # fmt: skip
    verify.add_argument(
        "--trust-key", action="append", metavar="PUB",
        help="also require a signature by this public key; repeatable",
    )  # fmt: skip
    verify.set_defaults(run=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """One line per document: its digest holds and who signed it, or why not (exit 1)."""
    from aedr.seals import load_public_key
    from aedr.workflows import verify_file

    keys = [load_public_key(path) for path in args.trust_key or ()]
    failed = 0
    for path in args.files:
        for check in verify_file(path, keys):
            failed += not check.ok
            print(f"{'OK' if check.ok else 'FAILED'}  {check.source}: {check.detail}")
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


COMMANDS: tuple[Callable[[Commands], None], ...] = (
    add_score, add_homogeneity, add_calibrate, add_attribute, add_calibrations, add_localize,
    add_serve, add_evaluate, add_reproduce, add_models, add_keys, add_verify, add_demo,
)  # fmt: skip


EXAMPLES = {
    "score": "aedr score images/ --model taesd --model sdxl --out scores.jsonl",
    "homogeneity": "aedr homogeneity photos/ --out homogeneity.csv",
    "calibrate": "aedr calibrate made-by-taesd/ --model taesd --out taesd.json",
    "attribute": "aedr attribute suspects/ --calibration taesd.json --calibration sdxl.json",
    "localize": "aedr localize edited.png --calibration taesd.json --out maps/",
    "serve": "aedr serve --calibration taesd.json --calibration sdxl.json",
    "evaluate": "aedr evaluate --scores scores.jsonl --labels labels.csv --out report/",
    "reproduce": "aedr reproduce Imgs/ --out tables/",
    "models": "aedr models --check taesd --random-weights",
    "calibrations": "aedr calibrations show taesd.highpass.0123456789abcdef0123.built.json",
    "keys": "aedr keys lab  (then: aedr calibrate ... --sign-key lab.key)",
    "verify": "aedr verify taesd.json aedr-records.json --trust-key lab.pub",
    "demo": "aedr demo",
}
"""One example per command, printed below its help."""


class _FullHelp(argparse.Action):
    """``--help-all``: the command's help with every option group shown."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="show every option (paper reproduction, scale-out, "
                         "store and limits too) and exit")  # fmt: skip

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        build_parser(full_help=True).parse_args([parser.prog.split()[-1], "--help"])


class _Parser(argparse.ArgumentParser):
    """An argument parser that suggests the nearest command or option for a typo."""

    def error(self, message: str):  # type: ignore[override]
        import difflib

        typo = re.search(r"invalid choice: '([^']*)'", message) or re.search(
            r"unrecognized arguments: (\S+)", message
        )
        if typo:
            word = typo.group(1).split("=")[0]
            known = [*self._option_strings(), *self._command_names()]
            near = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
            if near:
                message += f" (did you mean {near[0]}?)"
        super().error(message)

    def _option_strings(self) -> list[str]:
        options = list(self._option_string_actions)
        command = getattr(self, "chosen_command", None)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                options += list(action.choices[command]._option_string_actions)
        return options

    def _command_names(self) -> list[str]:
        return [name for action in self._actions
                if isinstance(action, argparse._SubParsersAction) for name in action.choices]  # fmt: skip

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        words = list(sys.argv[1:] if args is None else args)
        self.chosen_command = next((w for w in words if w in self._command_names()), None)
        return super().parse_args(words, namespace)


def _command(commands: Commands, name: str, help_text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name, help=help_text, description=help_text, epilog=f"example: {EXAMPLES[name]}",
    )  # fmt: skip
    sub.full_help = commands.full_help  # type: ignore[attr-defined]
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    if not commands.full_help:
        sub.add_argument("--help-all", action=_FullHelp)
    return sub


def build_parser(full_help: bool = False) -> argparse.ArgumentParser:
    """The ``aedr`` parser; ``full_help`` shows the options each command keeps under
    ``--help-all``."""
    parser = _Parser(
        prog="aedr",
        description="Which latent diffusion model made this image? Training-free attribution by "
        "autoencoder double-reconstruction (AEDR).",
        epilog="Exit codes: 0 all inputs scored, 1 some inputs failed (see their error records), "
        "2 usage or set-up error. Guide: docs/usage.md.",
    )
    parser.add_argument("--version", action="version", version=f"aedr {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    commands.full_help = full_help  # type: ignore[attr-defined]
    for add in COMMANDS:
        add(commands)
    return parser


def _terminate(signum, frame) -> None:
    """SIGTERM ends the run like Ctrl-C: output files are closed with every finished record."""
    raise KeyboardInterrupt


def _release_stdout() -> None:
    """After a failed write to stdout (a full disk, a closed pipe), point it at /dev/null so that
    the interpreter's last flush cannot print a second error."""
    import os

    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _message(exc: AedrError) -> str:
    """A library error's message, with what to do next: its hint, or the flag that does it."""
    from aedr.autoencoders.base import ModelUnavailableError
    from aedr.measure.store import StoreError
    from aedr.records import OutputExistsError

    if isinstance(exc, StoreError):
        return f"{exc} (--no-cache measures without the store)"
    if isinstance(exc, OutputExistsError):
        return f"{exc}; pass --overwrite to replace it (score: or --resume to complete it)"
    if isinstance(exc, ModelUnavailableError) and "weights folder" in str(exc):
        return f"{exc} (name the folder with --weights-dir DIR)"
    return f"{exc} ({exc.hint})" if exc.hint else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    import contextlib
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if getattr(args, "device", None) == "auto":
        from aedr.autoencoders.devices import auto_device

        args.device = auto_device()
        if args.device != "cpu" and not getattr(args, "quiet", False):
            print(f"aedr {args.command}: running on {args.device} (--device auto)", file=sys.stderr)
    try:
        with contextlib.ExitStack() as args.resources:
            return args.run(args)
    except AedrError as exc:
        _release_stdout()
        print(f"aedr {args.command}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"aedr {args.command}: interrupted; records written so far are kept", file=sys.stderr)
        return 130
