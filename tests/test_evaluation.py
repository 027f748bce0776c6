import csv
import json

import numpy as np
import pytest

from aedr.calibration import fit_calibration
from aedr.evaluation import (
    EvaluationError,
    average_precision,
    evaluate,
    read_labels,
    roc_auc,
    tpr_at_fpr,
)
from aedr.report import write_report


def synthetic(seed=0, n=20):
    """Records for models a and b over images made by a, by b, and real photos.

    Each model gives its own images signals near 1 and everything else signals near 2 (b is a
    little less sharp), so every number below can be checked by hand.
    """
    rng = np.random.default_rng(seed)
    records, labels = [], {}
    for source in ("a", "b", "real"):
        for index in range(n):
            path = f"/data/{source}/{index}.png"
            labels[path] = source
            for model, spread in (("a", 0.1), ("b", 0.3)):
                centre = 1.0 if source == model else 2.0
                signal = float(rng.normal(centre, spread))
                records.append({"path": path, "model": model, "signal": signal, "error": ""})
    return records, labels


def test_metrics_match_their_definitions():
    positives, negatives = np.array([0.1, 0.2, 0.5]), np.array([0.4, 0.6, 0.9, 1.0])
    pairs = [(p < q) + 0.5 * (p == q) for p in positives for q in negatives]
    assert roc_auc(positives, negatives) == pytest.approx(np.mean(pairs))
    # ranks: 0.1+ 0.2+ 0.4- 0.5+ ... precision at each positive: 1, 1, 3/4
    assert average_precision(positives, negatives) == pytest.approx((1 + 1 + 0.75) / 3)
    assert tpr_at_fpr(positives, negatives, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(positives, negatives, 0.25) == pytest.approx(1.0)


def test_paper_tables_with_given_calibrations():
    records, labels = synthetic()
    calibrations = {
        m: fit_calibration([1.0, 1.1, 0.9, 1.05, 0.95], m, 0.05) for m in ("a", "b")
    }  # fmt: skip
    result = evaluate(records, labels, calibrations, method="aedr")
    a = result.models["a"]
    assert [row["source"] for row in a.pairwise] == ["b", "real"]
    for row in a.pairwise:
        assert row["TP"] + row["FN"] == 20 and row["FP"] + row["TN"] == 20
    tau = calibrations["a"].threshold
    own = [r["signal"] for r in records if r["model"] == "a" and labels[r["path"]] == "a"]
    assert a.pairwise[0]["TP"] == sum(s < tau for s in own)
    assert a.metrics["roc_auc"] > 0.99 and result.models["b"].metrics["roc_auc"] > 0.9
    assert result.confusion["real"].get("none", 0) >= 18
    assert result.confusion["a"].get("a", 0) >= 15


def test_thresholds_are_fitted_on_half_of_the_own_images_without_calibrations():
    records, labels = synthetic()
    result = evaluate(records, labels, method="aedr", alpha=0.1)
    report = result.models["a"]
    assert len(report.own_test) == 10 and len(report.fitted_on) == 10
    assert "fitted here on 10 of its 20 images" in report.calibration_source
    assert sum(result.confusion["a"].values()) == 10 + 0  # a's fitting images are held out


def test_errors_and_unlabelled_records_are_skipped_and_nothing_matching_is_an_error():
    records, labels = synthetic(n=4)
    records.append({"path": "/elsewhere/x.png", "model": "a", "signal": 1.0, "error": ""})
    records.append({"path": "/data/a/0.png", "model": "a", "signal": None, "error": "bad"})
    assert evaluate(records, labels, method="aedr").skipped == 2
    with pytest.raises(EvaluationError, match="no score record matches a label"):
        evaluate(records, {"/nope.png": "a"}, method="aedr")


def test_labels_match_by_file_name_and_report_is_written(tmp_path):
    records, labels = synthetic(n=6)
    label_file = tmp_path / "labels.csv"
    with open(label_file, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        for path, label in labels.items():
            writer.writerow([f"{label}-{path.rsplit('/', 1)[-1]}", label])
    renamed = [
        {**r, "path": f"/x/{labels[r['path']]}-{r['path'].rsplit('/', 1)[-1]}"} for r in records
    ]
    result = evaluate(renamed, read_labels(label_file), method="aedr")
    assert set(result.models) == {"a", "b"} and result.skipped == 0
    html = write_report(result, tmp_path / "report").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Table 1" in html
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["mean"]) == {"a", "b"}
    for name in ("pairwise.csv", "per_model.csv", "confusion.csv", "signals.png", "roc.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0


def test_fitted_method_reports_beta_and_complexity_plot(tmp_path):
    rng = np.random.default_rng(2)
    records, labels = [], {}
    for source in ("a", "real"):
        for index in range(30):
            path = f"/d/{source}/{index}.png"
            labels[path] = source
            h = rng.uniform(0.1, 0.6)
            ratio = (1.2 if source == "a" else 2.5) * h**-0.4 * np.exp(rng.normal(0, 0.03))
            records.append({"path": path, "model": "a", "loss1": ratio * 0.01, "loss2": 0.01,
                            "homogeneity": h, "error": ""})  # fmt: skip
    result = evaluate(records, labels, method="fitted")
    report = result.models["a"]
    assert report.calibration.beta == pytest.approx(0.4, abs=0.1)
    assert "beta" in report.calibration_source and len(report.complexity) == 30
    assert report.metrics["roc_auc"] > 0.99
    html = write_report(result, tmp_path / "fitted").read_text()
    assert "Complexity fit" in html and (tmp_path / "fitted" / "complexity.png").is_file()


def test_loss_column_methods_with_several_models_give_a_confusion_matrix():
    records, labels = synthetic(n=8)
    rng = np.random.default_rng(5)
    for record in records:  # the same statistics, as loss columns instead of a signal
        record.update(
            loss1=record.pop("signal") * 0.01, loss2=0.01, homogeneity=rng.uniform(0.3, 0.6)
        )
    for method in ("ratio", "single-loss", "aedr", "fitted"):
        result = evaluate(records, labels, method=method)
        assert set(result.confusion) == {"a", "b", "real"}, method
