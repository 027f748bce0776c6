"""Evaluation of attribution against known sources: the paper's tables, ROC metrics, confusion.

Inputs are score records (any number of models) and labels mapping each image to its true source
(a model name, or ``real``). For each target model M:

- a threshold: from M's calibration when one is given, otherwise fitted (KDE, ``alpha``) on every
  other image of M's own (sorted by path: even positions calibrate, odd ones are tested);
- the paper's tables: for every other source S, M's test images against S's images, with
  TP/FP/FN/TN and accuracy (Table 1 averages the other models, Table 2 is ``real``);
- threshold-free metrics on all test images (M's own are positives): ROC AUC, average precision,
  TPR at 1% and 5% FPR;
- with two or more models, a confusion matrix of true sources against overall verdicts, and the
  open-set numbers a user meets (:func:`open_set_metrics`): how often the verdict is right, how
  often a real image is attributed to some model, how often a model's image is named correctly.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aedr.decide.attribution import AMBIGUITY_RATIO, CandidateThresholds, decision, verdict_of
from aedr.decide.calibration import (
    DEFAULT_ALPHA,
    UNVERIFIED_IDENTITY,
    Calibration,
    calibrate,
)
from aedr.decide.statistics import DEFAULT_STATISTIC, get_statistic
from aedr.errors import AedrError
from aedr.files import replacing, write_atomic
from aedr.measure.provenance import Provenance
from aedr.records import read_records

REAL = "real"
_UNKNOWN_PROVENANCE = Provenance(UNVERIFIED_IDENTITY)  # thresholds fitted here, on loss files


class EvaluationError(AedrError, ValueError):
    """Inputs that cannot be evaluated (no labels match, a model without own images, ...)."""


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """``path -> label`` from a CSV or JSONL file with ``path`` and ``label`` columns."""
    labels = {}
    for row in read_records(path):
        if "path" not in row or "label" not in row:
            raise EvaluationError(f"{path}: labels need 'path' and 'label' columns")
        labels[str(row["path"])] = str(row["label"])
    return labels


def match_label(path: str, labels: Mapping[str, str], by_name: Mapping[str, str]) -> str | None:
    """A record's label: by its exact path, else by its file name (when that name is unique)."""
    return labels.get(path) or by_name.get(Path(path).name)


def roc_points(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) over all thresholds, for "belongs when the statistic is low"."""
    scores = np.concatenate([positives, negatives])
    truth = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
    order = np.argsort(scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    distinct = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tpr = np.r_[0, np.cumsum(truth)[distinct] / positives.size]
    fpr = np.r_[0, np.cumsum(1 - truth)[distinct] / negatives.size]
    return fpr, tpr


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(positive < negative) + P(tie) / 2: the Mann-Whitney form of the ROC AUC."""
    less = (positives[:, None] < negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(less + ties / 2)


def average_precision(positives: np.ndarray, negatives: np.ndarray) -> float:
    scores = np.concatenate([positives, negatives])
    truth = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
    truth = truth[np.argsort(scores, kind="mergesort")]
    precision = np.cumsum(truth) / np.arange(1, truth.size + 1)
    return float((precision * truth).sum() / positives.size)


def tpr_at_fpr(positives: np.ndarray, negatives: np.ndarray, fpr_target: float) -> float:
    """The largest TPR reachable with FPR at or below ``fpr_target``."""
    fpr, tpr = roc_points(positives, negatives)
    return float(tpr[fpr <= fpr_target + 1e-12].max())


@dataclass
class ModelReport:
    model: str
    calibration: Calibration
    calibration_source: str
    own_test: list[float]
    by_source: dict[str, list[float]]
    fitted_on: set[str] = field(default_factory=set)  # paths used to fit the threshold here
    values: dict[str, float] = field(default_factory=dict)  # path -> statistic
    # path -> why the statistic cannot accept it (``Statistic.shortfall``), where it cannot
    shortfalls: dict[str, str] = field(default_factory=dict)
    complexity: list[tuple[float, float]] = field(default_factory=list)  # own (H, ratio), fitted
    pairwise: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    statistic: str
    models: dict[str, ModelReport]
    sources: list[str]
    confusion: dict[str, dict[str, int]]
    skipped: int  # error records, and records the statistic cannot read
    unlabelled: int = 0  # records no label matched

    def summary(self) -> dict[str, Any]:
        """Every number, as plain values (metrics.json)."""
        return {
            "statistic": self.statistic,
            "sources": self.sources,
            "skipped_records": self.skipped,
            "unlabelled_records": self.unlabelled,
            "models": {
                name: {
                    "threshold": report.calibration.threshold,
                    "alpha": report.calibration.alpha,
                    "parameters": report.calibration.parameters,
                    "calibration": report.calibration_source,
                    "metrics": report.metrics,
                    "pairwise": report.pairwise,
                }
                for name, report in self.models.items()
            },
            "mean": mean_table(self),
            "confusion": self.confusion,
            "open_set": open_set_metrics(self.confusion),
        }


def _confusion_counts(
    tp: int, fn: int, fp: int, tn: int
) -> dict[str, Any]:  # one row of the paper's tables
    total = tp + fn + fp + tn
    return {"TP": tp, "FN": fn, "FP": fp, "TN": tn, "accuracy": (tp + tn) / total if total else 0}


def open_set_metrics(confusion: Mapping[str, Mapping[str, int]]) -> dict[str, float | int]:
    """Verdict accuracy (a model's image named, a real one ``none``), the share of real images
    given any other verdict (false attribution: ``ambiguous`` and ``partial`` name models too),
    own-image recall (a model's image named exactly) and the share called ``ambiguous``.

    >>> m = open_set_metrics({"a": {"a": 8, "b": 2}, "real": {"none": 9, "a": 1}})
    >>> m["verdict_accuracy"], m["real_false_attribution"], m["own_recall"]
    (0.85, 0.1, 0.8)
    """
    if not confusion:
        return {}
    total = sum(sum(row.values()) for row in confusion.values())
    real = confusion.get(REAL, {})
    generated = {source: row for source, row in confusion.items() if source != REAL}
    named = sum(row.get(source, 0) for source, row in generated.items())
    n_generated = sum(sum(row.values()) for row in generated.values())
    n_real = sum(real.values())
    ambiguous = sum(row.get("ambiguous", 0) for row in confusion.values())
    nan = float("nan")
    return {
        "images": total,
        "verdict_accuracy": (named + real.get("none", 0)) / total if total else nan,
        "real_false_attribution": (n_real - real.get("none", 0)) / n_real if n_real else nan,
        "own_recall": named / n_generated if n_generated else nan,
        "ambiguous": ambiguous / total if total else nan,
    }


def mean_table(result: EvaluationResult) -> dict[str, dict[str, float]]:
    """Per model: mean accuracy against other models (Table 1) and against real (Table 2)."""
    table = {}
    for name, report in result.models.items():
        others = [row["accuracy"] for row in report.pairwise if row["source"] != REAL]
        real = [row["accuracy"] for row in report.pairwise if row["source"] == REAL]
        table[name] = {
            "vs_models": float(np.mean(others)) if others else float("nan"),
            "vs_real": float(np.mean(real)) if real else float("nan"),
            "auc": report.metrics.get("roc_auc", float("nan")),  # none without negatives
        }
    return table


def evaluate(
    records: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
    calibrations: Mapping[str, Calibration] | None = None,
    statistic: str = DEFAULT_STATISTIC,
    alpha: float = DEFAULT_ALPHA,
    max_false_attribution: float | None = None,
    ambiguity_ratio: float = AMBIGUITY_RATIO,
) -> EvaluationResult:
    """Evaluate every model that has records; see the module docstring. With
    ``max_false_attribution`` the given calibrations' thresholds are first lowered as
    ``aedr attribute --max-false-attribution`` does (they need negatives); the verdicts use
    ``ambiguity_ratio`` as :func:`~aedr.decide.attribution.verdict_of` does."""
    thresholds = CandidateThresholds(list((calibrations or {}).values()), max_false_attribution)
    calibrations = thresholds.at(None)[0]
    by_name = _unique_names(labels)
    rows: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)  # model -> path -> record
    truth: dict[str, str] = {}
    skipped = unlabelled = 0
    reader = get_statistic(statistic)
    for record in records:
        label = match_label(str(record.get("path")), labels, by_name)
        if label is None:
            unlabelled += 1
            continue
        if not reader.usable(record):
            skipped += 1
            continue
        rows[record["model"]][record["path"]] = record
        truth[record["path"]] = label
    if not rows:
        raise EvaluationError("no score record matches a label (compare their path columns)")
    sources = sorted(set(truth.values()))
    # each record is decided at the thresholds for its JPEG quality, enlargement or size, where
    # the calibrations have them (as ``aedr attribute`` decides them)
    records_at = {
        path: record for model_rows in rows.values() for path, record in model_rows.items()
    }

    def decided_at(path: str) -> dict[str, Calibration]:
        return thresholds.for_record(records_at[path])[0]

    reports = {
        model: _model_report(
            model, model_rows, truth, calibrations.get(model), statistic, alpha, decided_at
        )
        for model, model_rows in sorted(rows.items())
    }
    values = {model: report.values for model, report in reports.items()}
    confusion = (
        _confusion(values, truth, reports, ambiguity_ratio, decided_at) if len(reports) > 1 else {}
    )
    return EvaluationResult(statistic, reports, sources, confusion, skipped, unlabelled)


def _unique_names(labels: Mapping[str, str]) -> dict[str, str]:
    names = Counter(Path(p).name for p in labels)
    return {Path(p).name: label for p, label in labels.items() if names[Path(p).name] == 1}


def _model_report(
    model: str,
    rows: dict[str, Mapping[str, Any]],
    truth: dict[str, str],
    calibration: Calibration | None,
    statistic: str,
    alpha: float,
    decided_at: Callable[[str], Mapping[str, Calibration]],
) -> ModelReport:
    own = sorted(p for p in rows if truth[p] == model)
    if calibration is not None:
        if calibration.statistic != statistic:
            raise EvaluationError(
                f"calibration for {model} uses statistic {calibration.statistic}, not {statistic}"
            )
        test_own, source = own, "given calibration"
    else:
        fit_paths, test_own = own[0::2], own[1::2]
        if len(fit_paths) < 2 or not test_own:
            raise EvaluationError(
                f"{model}: {len(own)} labelled images of its own; give a calibration or at least "
                "4 of them (half fit the threshold, half are tested)"
            )
        fit_rows = [rows[p] for p in fit_paths]
        assumed = None if fit_rows[0].get("provenance") else _UNKNOWN_PROVENANCE
        calibration = calibrate(fit_rows, model, alpha, statistic, assumed_provenance=assumed)
        source = f"fitted here on {len(fit_paths)} of its {len(own)} images (alpha {alpha})"
        if "beta" in calibration.parameters:
            source += f", beta {calibration.parameters['beta']:.3f}"
    # each image read as it is decided: a JPEG by its quality's thresholds, which may read
    # another statistic (``fit_jpeg_thresholds``)
    deciding = {path: decided_at(path).get(model, calibration) for path in rows}
    values = {path: deciding[path].value(row) for path, row in rows.items()}
    shortfalls = {path: why for path, row in rows.items()
                  if (why := deciding[path].shortfall(row))}  # fmt: skip
    by_source: dict[str, list[float]] = defaultdict(list)
    for path, value in values.items():
        if truth[path] != model:
            by_source[truth[path]].append(value)
    report = ModelReport(
        model, calibration, source, [values[p] for p in test_own], dict(by_source),
        fitted_on=set(own) - set(test_own), values=values, shortfalls=shortfalls,
    )  # fmt: skip
    if "beta" in calibration.parameters:
        ratio = get_statistic("ratio")
        report.complexity = [(float(rows[p]["homogeneity"]), ratio.value(rows[p])) for p in own]
    positives = np.asarray(report.own_test)
    negatives = np.asarray([v for vs in by_source.values() for v in vs])
    accepted = {p: deciding[p].belongs(values[p], shortfalls.get(p, "")) for p in rows}
    tp = sum(accepted[p] for p in test_own)
    for other in sorted(by_source):
        others = [p for p in rows if truth[p] == other]
        fp = sum(accepted[p] for p in others)
        row = _confusion_counts(tp, len(test_own) - tp, fp, len(others) - fp)
        report.pairwise.append({"source": other, **row})
    if negatives.size:
        report.metrics = {
            "roc_auc": roc_auc(positives, negatives),
            "average_precision": average_precision(positives, negatives),
            "tpr_at_1pct_fpr": tpr_at_fpr(positives, negatives, 0.01),
            "tpr_at_5pct_fpr": tpr_at_fpr(positives, negatives, 0.05),
            "own_test_images": int(positives.size),
            "other_images": int(negatives.size),
        }
    return report


def _confusion(
    statistic: dict[str, dict[str, float]],
    truth: dict[str, str],
    reports: dict[str, ModelReport],
    ambiguity_ratio: float,
    decided_at: Callable[[str], Mapping[str, Calibration]],
) -> dict[str, dict[str, int]]:
    """True source x verdict over images scored by every model (calibration images excluded),
    each JPEG decided at its quality's thresholds where the calibrations have them."""
    calibrations = {name: report.calibration for name, report in reports.items()}
    fitted = set().union(*(report.fitted_on for report in reports.values()))
    confusion: dict[str, Counter] = defaultdict(Counter)
    common = set.intersection(*(set(v) for v in statistic.values())) - fitted
    for path in sorted(common):
        decisions = [
            decision(
                name,
                name,
                statistic[name][path],
                decided_at(path).get(name, calibrations[name]),
                reports[name].shortfalls.get(path, ""),
            )
            for name in sorted(statistic)
        ]
        confusion[truth[path]][verdict_of(decisions, ambiguity_ratio)[0]] += 1
    return {source: dict(counts) for source, counts in sorted(confusion.items())}


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: metrics.json stays valid JSON (null)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_tables(result: EvaluationResult, folder: Path) -> None:
    """metrics.json, pairwise.csv, per_model.csv and confusion.csv in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = json.dumps(_finite(result.summary()), indent=2, allow_nan=False)
    write_atomic(folder / "metrics.json", summary + "\n")
    with replacing(folder / "pairwise.csv", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["model", "source", "TP", "FN", "FP", "TN", "accuracy"])
        for name, report in result.models.items():
            for row in report.pairwise:
                writer.writerow([name, row["source"], row["TP"], row["FN"], row["FP"],
                                 row["TN"], f"{row['accuracy']:.6f}"])  # fmt: skip
    with replacing(folder / "per_model.csv", newline="") as stream:
        writer = csv.writer(stream)
        keys = ["roc_auc", "average_precision", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr"]
        writer.writerow(["model", "threshold", "vs_models", "vs_real", *keys])
        means = mean_table(result)
        for name, report in result.models.items():
            writer.writerow([name, report.calibration.threshold, means[name]["vs_models"],
                             means[name]["vs_real"], *(report.metrics.get(k) for k in keys)])  # fmt: skip
    with replacing(folder / "confusion.csv", newline="") as stream:
        verdicts = sorted({v for row in result.confusion.values() for v in row})
        writer = csv.writer(stream)
        writer.writerow(["true source", *verdicts])
        for source, row in result.confusion.items():
            writer.writerow([source, *(row.get(v, 0) for v in verdicts)])
