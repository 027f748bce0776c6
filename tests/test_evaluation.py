import csv
import json

import numpy as np
import pytest
from conftest import loss_record

from aedr.decide.calibration import calibrate, fit_jpeg_thresholds
from aedr.decide.evaluation import (
    EvaluationError,
    average_precision,
    evaluate,
    read_labels,
    roc_auc,
    tpr_at_fpr,
)
from aedr.decide.report import write_report


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
                records.append(signal_record(path, model, signal))
    return records, labels


def signal_record(path, model, signal, error=""):
    """A measurement whose paper statistic (and ratio) is ``signal``: homogeneity 1."""
    return loss_record(signal * 0.01, 0.01, 1.0, path=path, model=model, error=error)


def given_calibration(model):
    records = [signal_record("", model, s) for s in (1.0, 1.1, 0.9, 1.05, 0.95)]
    return calibrate(records, model, 0.05, "aedr")


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
    calibrations = {m: given_calibration(m) for m in ("a", "b")}
    result = evaluate(records, labels, calibrations, statistic="aedr")
    a = result.models["a"]
    assert [row["source"] for row in a.pairwise] == ["b", "real"]
    for row in a.pairwise:
        assert row["TP"] + row["FN"] == 20 and row["FP"] + row["TN"] == 20
    tau = calibrations["a"].threshold
    own = [r["loss1"] / 0.01 for r in records if r["model"] == "a" and labels[r["path"]] == "a"]
    assert a.pairwise[0]["TP"] == sum(s < tau for s in own)
    assert a.metrics["roc_auc"] > 0.99 and result.models["b"].metrics["roc_auc"] > 0.9
    assert result.confusion["real"].get("none", 0) >= 18
    assert result.confusion["a"].get("a", 0) >= 15


def test_thresholds_are_fitted_on_half_of_the_own_images_without_calibrations():
    records, labels = synthetic()
    result = evaluate(records, labels, statistic="aedr", alpha=0.1)
    report = result.models["a"]
    assert len(report.own_test) == 10 and len(report.fitted_on) == 10
    assert "fitted here on 10 of its 20 images" in report.calibration_source
    assert sum(result.confusion["a"].values()) == 10 + 0  # a's fitting images are held out


def test_errors_and_unlabelled_records_are_skipped_and_nothing_matching_is_an_error():
    records, labels = synthetic(n=4)
    records.append(signal_record("/elsewhere/x.png", "a", 1.0))
    records.append({**signal_record("/data/a/0.png", "a", 1.0), "loss1": None, "error": "bad"})
    result = evaluate(records, labels, statistic="aedr")
    assert (result.skipped, result.unlabelled) == (1, 1)
    with pytest.raises(EvaluationError, match="no score record matches a label"):
        evaluate(records, {"/nope.png": "a"}, statistic="aedr")


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
    result = evaluate(renamed, read_labels(label_file), statistic="aedr")
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
            records.append(loss_record(ratio * 0.01, 0.01, h, path=path, model="a"))
    result = evaluate(records, labels, statistic="fitted")
    report = result.models["a"]
    assert report.calibration.parameters["beta"] == pytest.approx(0.4, abs=0.1)
    assert "beta" in report.calibration_source and len(report.complexity) == 30
    assert report.metrics["roc_auc"] > 0.99
    html = write_report(result, tmp_path / "fitted").read_text()
    assert "Complexity fit" in html and (tmp_path / "fitted" / "complexity.png").is_file()


def test_every_statistic_gives_a_confusion_matrix_of_held_out_images():
    records, labels = synthetic(n=8)
    rng = np.random.default_rng(5)
    for record in records:  # vary homogeneity so that the statistics really differ
        record["homogeneity"] = rng.uniform(0.8, 1.0)
    for statistic in ("ratio", "single-loss", "aedr", "fitted"):
        confusion = evaluate(records, labels, statistic=statistic).confusion
        # a's and b's fitting halves are held out everywhere: 4 own test images each, 8 real
        counts = {source: sum(row.values()) for source, row in confusion.items()}
        assert counts == {"a": 4, "b": 4, "real": 8}, statistic
        assert confusion["a"].get("a", 0) >= 3 and confusion["real"].get("none", 0) >= 6, (
            statistic, confusion,
        )  # fmt: skip


def test_open_set_numbers_follow_the_confusion_and_a_limit_lowers_the_thresholds(tmp_path):
    records, labels = synthetic()
    rng = np.random.default_rng(5)
    calibrations = {}
    for model in ("a", "b"):
        own = [signal_record("", model, s) for s in (1.0, 1.1, 0.9, 1.05, 0.95)]
        # real photos that score like the models' own images about a fifth of the time
        negatives = [{**signal_record("", model, s), "content_sha256": f"n{i}"}
                     for i, s in enumerate(rng.choice([1.0, 2.0], 40, p=[0.2, 0.8]))]  # fmt: skip
        calibrations[model] = calibrate(own, model, 0.05, "aedr", negatives=negatives)
    result = evaluate(records, labels, calibrations, "aedr")
    numbers = result.summary()["open_set"]
    confusion = result.confusion
    right = confusion["a"].get("a", 0) + confusion["b"].get("b", 0) + confusion["real"]["none"]
    assert numbers["images"] == 60 and numbers["verdict_accuracy"] == right / 60
    assert numbers["real_false_attribution"] == 1 - confusion["real"]["none"] / 20
    limited = evaluate(records, labels, calibrations, "aedr", max_false_attribution=0.05)
    for model in ("a", "b"):
        assert limited.models[model].calibration.threshold < calibrations[model].threshold
    assert limited.summary()["open_set"]["own_recall"] < numbers["own_recall"]
    report = write_report(result, tmp_path / "report")
    assert f"verdict right for {numbers['verdict_accuracy']:.1%} of 60 images" in (
        report.read_text()
    )


def test_jpeg_records_are_decided_at_their_quality_thresholds():
    """JPEG files whose signals all moved up: rejected at the clean thresholds, accepted (and
    named) at thresholds fitted at a nearby quality; the PNGs keep the clean ones."""
    records, labels = synthetic()
    for record in records:
        if record["path"].startswith("/data/a/") and int(record["path"][8:-4]) < 10:
            record.update(loss1=record["loss1"] + 0.015, jpeg_quality=72, path=record["path"])
    clean = {m: given_calibration(m) for m in ("a", "b")}
    shifted = [signal_record("", "a", s + 1.5) for s in (1.0, 1.1, 0.9, 1.05, 0.95)]
    with_jpeg = {**clean, "a": fit_jpeg_thresholds(clean["a"], {70: shifted})}
    before, after = (evaluate(records, labels, c, statistic="aedr") for c in (clean, with_jpeg))
    assert before.models["a"].pairwise[0]["TP"] <= 10 < after.models["a"].pairwise[0]["TP"]
    assert after.models["a"].pairwise[0]["TP"] >= 18
    assert before.confusion["a"].get("a", 0) <= 10 < after.confusion["a"].get("a", 0)
    assert after.models["a"].metrics["roc_auc"] == before.models["a"].metrics["roc_auc"]

    # thresholds that read another statistic decide (and rank) the JPEG files by it
    for record in records:
        record["ac_log_ratio"] = 0.0 if record.get("jpeg_quality") else 5.0
    by_ac = {**clean, "a": fit_jpeg_thresholds(
        clean["a"], {70: [{**r, "ac_log_ratio": 0.1 * i} for i, r in enumerate(shifted)]},
        statistic="ac")}  # fmt: skip
    decided = evaluate(records, labels, by_ac, statistic="aedr").models["a"]
    jpegs = [p for p in decided.values if p.startswith("/data/a/") and int(p[8:-4]) < 10]
    assert jpegs and all(decided.values[p] == 0.0 for p in jpegs)
    assert decided.pairwise[0]["TP"] >= 18  # the JPEGs accepted as at thresholds of aedr


def test_images_with_too_little_detail_are_accepted_nowhere_but_still_ranked():
    """The pairwise tables and the confusion decide as ``aedr attribute`` does: an image whose
    high-pass evidence covers too little of it is accepted by no model; ROC AUC ranks its signal."""
    records, labels = synthetic()
    for record in records:
        record["highpass_log_ratio"] = record["loss1"] / 0.01
        record["highpass_weight"] = 0.5
    flat = [r for r in records if labels[r["path"]] == "a"][:10]  # 5 images, each by a and b
    for record in flat:
        record["highpass_weight"] = 0.01
    own = [{**signal_record("", "a", s), "highpass_log_ratio": s} for s in (1.0, 1.1, 0.9, 1.05)]
    calibrations = {m: calibrate(own, m, 0.05, "highpass") for m in ("a", "b")}
    result = evaluate(records, labels, calibrations, "highpass")
    everywhere = evaluate([{**r, "highpass_weight": 0.5} for r in records], labels,
                          calibrations, "highpass")  # fmt: skip
    a, before = result.models["a"], everywhere.models["a"]
    assert set(a.shortfalls) == {r["path"] for r in flat if r["model"] == "a"}
    assert a.pairwise[0]["TP"] == before.pairwise[0]["TP"] - 5
    assert a.metrics["roc_auc"] == before.metrics["roc_auc"]
    assert result.confusion["a"].get("none", 0) == everywhere.confusion["a"].get("none", 0) + 5
