"""Targets: the kind inferred from the values, labels, the minority positive class, metrics
against scikit-learn and hand-computed values, and errors that name the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from katbench.data.targets import encode_target, infer_kind, target_metrics


@pytest.mark.parametrize("values, kind", [
    (["yes", "no", "no"], "binary"),
    ([0.0, 1.0, 1.0, 0.0], "binary"),
    ([True, False, True], "binary"),
    (["cat", "dog", "fox"], "multiclass"),
    ([1, 2, 3, 4, 5] * 2, "multiclass"),                 # few integers: classes
    (list(range(11)), "regression"),                      # more than MAX_CLASSES integers
    ([0.5, 1.25, 3.0], "regression"),
])
def test_kind_is_inferred_from_the_values(values, kind):
    assert infer_kind(pd.Series(values, name="t")) == kind


def test_binary_positive_is_the_minority_class_unless_given():
    series = pd.Series(["no", "yes", "no", "no"], name="churn")
    target = encode_target(series)
    assert target.kind == "binary" and target.classes == ["no", "yes"]
    assert target.y.tolist() == [0, 1, 0, 0]
    assert encode_target(series, positive="no").y.tolist() == [1, 0, 1, 1]
    # numeric columns match numerically: positive 1 finds the 1.0 rows
    assert encode_target(pd.Series([1.0, 0.0, 0.0]), "binary", 1).y.tolist() == [1, 0, 0]
    assert "positive class 'yes' (25.0% of rows" in target.describe()


def test_multiclass_and_regression_labels():
    target = encode_target(pd.Series(["b", "c", "a", "b"]))
    assert target.kind == "multiclass" and target.classes == ["a", "b", "c"]
    assert target.y.tolist() == [1, 2, 0, 1] and target.y.dtype == np.int64
    values = np.linspace(0, 1, 100)
    reg = encode_target(pd.Series(values))
    assert reg.kind == "regression" and np.allclose(reg.y, values)
    assert sorted(np.bincount(reg.strata).tolist()) == [10] * 10    # deciles stratify splits


@pytest.mark.parametrize("values, kind, message", [
    ([3, 3, 3], "auto", "has a single value \\[3\\]: nothing to learn; set data.target"),
    (["a", "a"], "binary", "single class"),
    (["a", "b", "c"], "binary", "3 classes.*set data.positive=<the positive value> or "
                                "data.kind=multiclass"),
    (["1.5", "x", "2"], "regression", "non-numeric values \\(e.g. 'x'\\)"),
    ([1, 2], "ordinal", "data.kind='ordinal'; choose auto, binary, multiclass, regression"),
])
def test_bad_targets_name_the_fix(values, kind, message):
    with pytest.raises(ValueError, match=message):
        encode_target(pd.Series(values, name="t"), kind)


def test_metrics_match_references():
    from sklearn.metrics import log_loss, roc_auc_score

    y = np.array([0, 1, 1, 0, 1], dtype=np.float32)
    p = np.array([0.1, 0.8, 0.25, 0.3, 0.9])
    binary = target_metrics("binary", p, y)
    assert binary["auc"] == pytest.approx(roc_auc_score(y, p))       # 5 of 6 pairs ordered
    assert binary["auc"] == pytest.approx(5 / 6)
    assert binary["accuracy"] == pytest.approx(0.8)
    assert binary["log_loss"] == pytest.approx(log_loss(y, p))
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    multi = target_metrics("multiclass", probs, np.array([0, 2, 0]))
    assert multi["accuracy"] == pytest.approx(2 / 3)
    assert multi["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3])))
    reg = target_metrics("regression", np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0]))
    assert reg["rmse"] == pytest.approx(np.sqrt(5 / 3)) and reg["mae"] == pytest.approx(1.0)
