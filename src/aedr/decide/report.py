"""Plots and a self-contained HTML report of an evaluation (images embedded, works offline)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aedr.decide.evaluation import (
    EvaluationResult,
    mean_table,
    open_set_metrics,
    roc_points,
    write_tables,
)
from aedr.decide.localization import Region
from aedr.files import replacing, write_atomic

COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_histograms(result: EvaluationResult, path: Path) -> Path:
    """Per model: its own test signals against each other source, its KDE and threshold."""
    plt = _pyplot()
    models = list(result.models.values())
    figure, axes = plt.subplots(len(models), 1, figsize=(8, 2.8 * len(models)), squeeze=False)
    for axis, report in zip(axes[:, 0], models, strict=True):
        groups = {f"{report.model} (own, test)": report.own_test, **report.by_source}
        every = np.concatenate([np.asarray(v, float) for v in groups.values() if len(v)])
        low, high = np.percentile(every, [0.5, 99.5])
        bins = np.linspace(low, high, 40)
        for colour, (name, values) in zip(COLOURS, groups.items(), strict=False):
            if len(values):
                axis.hist(np.clip(values, low, high), bins, alpha=0.45, color=colour,
                          label=f"{name} ({len(values)})", density=True)  # fmt: skip
        calibration = report.calibration
        if len(calibration.signals) > 1:
            from scipy.stats import gaussian_kde

            grid = np.linspace(low, high, 400)
            axis.plot(grid, gaussian_kde(calibration.signals)(grid), color="black", lw=1.2,
                      label="KDE of calibration signals")  # fmt: skip
        axis.axvline(calibration.threshold, color="red", ls="--",
                     label=f"threshold {calibration.threshold:.4g}")  # fmt: skip
        axis.set_title(f"{report.model}: {result.statistic} signal (lower = belongs)", fontsize=10)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_roc(result: EvaluationResult, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 5))
    for colour, report in zip(COLOURS, result.models.values(), strict=False):
        negatives = np.asarray([v for vs in report.by_source.values() for v in vs], float)
        if negatives.size and report.own_test:
            fpr, tpr = roc_points(np.asarray(report.own_test, float), negatives)
            auc = report.metrics["roc_auc"]
            axis.plot(fpr, tpr, color=colour, label=f"{report.model} (AUC {auc:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", ls=":")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"ROC, {result.statistic}: own images vs all others", fontsize=10)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_complexity(result: EvaluationResult, path: Path) -> Path | None:
    """Per model with a fitted beta: log ratio against log H of its own images, and the fit."""
    fitted = [r for r in result.models.values() if r.complexity]
    if not fitted:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(fitted), figsize=(4 * len(fitted), 3.6), squeeze=False)
    for axis, report in zip(axes[0], fitted, strict=True):
        log_h, log_ratio = np.log(np.asarray(report.complexity)).T
        axis.scatter(log_h, log_ratio, s=10, alpha=0.6, color=COLOURS[0])
        fit = report.calibration.parameters
        if "slope" in fit:
            line = np.linspace(log_h.min(), log_h.max(), 50)
            axis.plot(line, fit["slope"] * line + fit["intercept"], color="red",
                      label=f"beta {fit['beta']:.3f} (R^2 {fit['r2']:.2f})")  # fmt: skip
            axis.legend(fontsize=8)
        axis.set_xlabel("log H")
        axis.set_ylabel("log ratio")
        axis.set_title(report.model, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(result: EvaluationResult, folder: Path) -> Path:
    """Tables (CSV/JSON), plots (PNG) and ``report.html`` in ``folder``; returns the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tables(result, folder)
    histograms = plot_histograms(result, folder / "signals.png")
    roc = plot_roc(result, folder / "roc.png")
    means = mean_table(result)
    summary_rows = [
        [name, report.calibration.threshold, report.calibration_source,
         means[name]["vs_models"], means[name]["vs_real"], report.metrics.get("roc_auc"),
         report.metrics.get("average_precision"), report.metrics.get("tpr_at_1pct_fpr"),
         report.metrics.get("tpr_at_5pct_fpr")]
        for name, report in result.models.items()
    ]  # fmt: skip
    pairwise_rows = [
        [name, row["source"], row["TP"], row["FN"], row["FP"], row["TN"], row["accuracy"]]
        for name, report in result.models.items()
        for row in report.pairwise
    ]
    verdicts = sorted({v for row in result.confusion.values() for v in row})
    confusion_rows = [
        [source, *(row.get(v, 0) for v in verdicts)] for source, row in result.confusion.items()
    ]
    sections = [
        f"<h1>AEDR evaluation: {html.escape(result.statistic)}</h1>",
        f"<p>{len(result.models)} models, sources: {html.escape(', '.join(result.sources))}. "
        f"{result.skipped} records skipped (errors or no label). Lower signals mean "
        "<em>made by this model</em>.</p>",
        "<h2>Summary</h2>",
        _table(
            [
                "model",
                "threshold",
                "calibration",
                "mean acc. vs models (Table 1)",
                "acc. vs real (Table 2)",
                "ROC AUC",
                "avg. precision",
                "TPR @1% FPR",
                "TPR @5% FPR",
            ],
            summary_rows,
        ),
        "<h2>Signals</h2>",
        _image(histograms, "signal histograms"),
        "<h2>ROC curves</h2>",
        _image(roc, "ROC curves"),
        "<h2>Per source (paper tables)</h2>",
        _table(["model", "other source", "TP", "FN", "FP", "TN", "accuracy"], pairwise_rows),
    ]
    complexity = plot_complexity(result, folder / "complexity.png")
    if complexity is not None:
        sections += [
            "<h2>Complexity fit (log ratio against log H, own images)</h2>",
            _image(complexity, "complexity fit"),
        ]
    if result.confusion:
        open_set = open_set_metrics(result.confusion)
        sections += [
            "<h2>Overall verdicts (true source x verdict)</h2>",
            "<p>What a user reads, all candidates at once: verdict right for "
            f"{open_set['verdict_accuracy']:.1%} of {open_set['images']} images; real images "
            f"attributed to a model: {open_set['real_false_attribution']:.1%}; a model's images "
            f"named correctly: {open_set['own_recall']:.1%}; ambiguous: "
            f"{open_set['ambiguous']:.1%}.</p>",
            _table(["true source", *verdicts], confusion_rows),
        ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}"
        "img{max-width:100%}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>AEDR evaluation</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    path = folder / "report.html"
    write_atomic(path, page)
    return path


def plot_local_map(
    rgb: np.ndarray,
    statistic: np.ndarray,
    path: Path,
    title: str,
    threshold: float | None = None,
    regions: Sequence[Region] = (),
) -> Path:
    """The image with its local map overlaid, a labelled colour bar and, when calibrated, the
    threshold drawn as a contour and on the bar, and the regions found boxed."""
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    height, width = statistic.shape
    side = 7.0  # inches for the image's longer side
    size = (max(4.5, side * min(1.0, width / height)), side * min(1.0, height / width) + 1.6)
    figure, axis = plt.subplots(figsize=size, layout="constrained")
    axis.imshow(rgb, interpolation="nearest")
    low, high = np.percentile(statistic, [1, 99])
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    shown = axis.imshow(statistic, cmap="viridis_r", alpha=0.55, vmin=low, vmax=high)
    bar = figure.colorbar(shown, ax=axis, orientation="horizontal", fraction=0.05, pad=0.02)
    label = "local statistic: lower = more consistent with the model"
    if threshold is not None:
        if statistic.min() < threshold < statistic.max():
            axis.contour(statistic, levels=[threshold], colors="white", linewidths=1.5)
        bar.ax.axvline(threshold, color="white", linewidth=2)
        for region in regions:
            left, top, right, bottom = region.box
            axis.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                     fill=False, edgecolor="#e7298a", linewidth=2))  # fmt: skip
        label += (
            f"\nwhite: calibrated local threshold {threshold:.3g}; pink boxes: regions below it"
        )
        title += f" ({len(regions)} region{'s' if len(regions) != 1 else ''})"
    else:
        label += "\nno calibration: no threshold, no regions"
    bar.set_label(label, fontsize=9)
    axis.set_title(title, fontsize=10)
    axis.set_xticks([])
    axis.set_yticks([])
    with replacing(path, "wb") as stream:
        figure.savefig(stream, dpi=100, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(figure)
    return path


def map_overlay_png(statistic: np.ndarray, threshold: float | None) -> bytes:
    """The local map as a translucent RGBA PNG of the image's size (for the web page's overlay):
    coloured like ``plot_local_map``, more opaque where the region is consistent with the model
    (evenly translucent without a calibrated ``threshold``)."""
    import io

    from matplotlib import colormaps
    from PIL import Image

    low, high = np.percentile(statistic, [1, 99])
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    scaled = np.clip((statistic - low) / max(high - low, 1e-12), 0, 1)
    rgba = colormaps["viridis_r"](scaled)
    rgba[..., 3] = 0.35 if threshold is None else np.where(statistic < threshold, 0.5, 0.2)
    buffer = io.BytesIO()
    Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(buffer, "PNG")
    return buffer.getvalue()
