"""Prediction targets of a user's data: their kind, their encoding and their metrics.

A target is ``binary``, ``multiclass`` or ``regression``. :func:`infer_kind` decides from the
values (``data.kind=auto``): two distinct values are binary; more non-numeric values, or at most
:data:`MAX_CLASSES` integer values, are classes; other numbers are a regression target.
:func:`encode_target` maps the column to model labels: 0/1 for binary (1 = ``positive``, by
default the minority class), class indices for multiclass (classes in sorted order), floats for
regression. :func:`target_metrics` scores predictions (probabilities, or values in the target's
units) with every metric of the kind; :data:`HIGHER_IS_BETTER` says which way each one points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("binary", "multiclass", "regression")
MAX_CLASSES = 10      # integer targets with at most this many values are classes (kind=auto)
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "log_loss": False, "rmse": False,
                    "mae": False}


@dataclass
class Target:
    """An encoded target column: labels ``y`` and what they mean."""

    y: np.ndarray       # binary: float32 0/1; multiclass: int64 class index; regression: float32
    kind: str
    classes: list[Any]  # the values of the classes in label order (empty for regression)

    @property
    def strata(self) -> np.ndarray:
        """Labels to stratify splits on: the classes, or a regression target's deciles."""
        if self.kind != "regression":
            return self.y.astype(np.int64)
        bins = min(10, max(1, len(self.y) // 10))
        return pd.qcut(self.y, bins, labels=False, duplicates="drop").astype(np.int64)

    def describe(self) -> str:
        """One line for the build log: kind, classes (positive share) or value range."""
        if self.kind == "regression":
            return (f"regression target (mean {self.y.mean():.4g}, std {self.y.std():.4g}; "
                    "data.kind overrides)")
        if self.kind == "binary":
            return (f"binary target, positive class {self.classes[1]!r} "
                    f"({100 * self.y.mean():.1f}% of rows; data.positive overrides)")
        return f"multiclass target, {len(self.classes)} classes (data.kind overrides)"


def _single_value_error(series: pd.Series, values: list[Any]) -> ValueError:
    return ValueError(f"target column {series.name!r} has a single value {values[:1]}: nothing "
                      "to learn; set data.target to a column with at least two values")


def infer_kind(series: pd.Series) -> str:
    """``binary`` / ``multiclass`` / ``regression`` from the non-missing values (see module)."""
    values = series.dropna().unique()
    if len(values) < 2:
        raise _single_value_error(series, list(values))
    if len(values) == 2:
        return "binary"
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if not numeric:
        return "multiclass"
    integral = bool(np.all(np.mod(values.astype(np.float64), 1) == 0))
    return "multiclass" if integral and len(values) <= MAX_CLASSES else "regression"


def _matches(series: pd.Series, value: Any) -> pd.Series:
    """Rows equal to ``value``, numerically for numeric columns (``1`` matches ``1.0``)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        if not pd.isna(number):
            return series == number
    return series.astype(str) == str(value)


def encode_target(series: pd.Series, kind: str = "auto", positive: Any = None) -> Target:
    """Labels of a target column without missing values (drop those rows first).

    Binary: 1 where the value is ``positive`` (default: the minority class; on a tie the larger
    value); a column with more than two values then needs ``positive``. Multiclass: the index of
    the value among the sorted classes. Regression: the values as float32.
    """
    values = sorted(series.unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(values) < 2:
        raise (ValueError(f"target column {series.name!r} has a single class {values}; binary "
                          "classification needs two (check data.target)") if kind == "binary"
               else _single_value_error(series, values))
    kind = infer_kind(series) if kind == "auto" else kind
    if kind not in KINDS:
        raise ValueError(f"data.kind={kind!r}; choose auto, {', '.join(KINDS)}")
    if kind == "regression":
        y = pd.to_numeric(series, errors="coerce")
        bad = series[y.isna()]
        if len(bad):
            raise ValueError(f"target column {series.name!r} has non-numeric values (e.g. "
                             f"{bad.iloc[0]!r}); a regression target needs numbers, or set "
                             "data.kind=binary|multiclass")
        return Target(y.to_numpy(np.float32), kind, [])
    if kind == "multiclass":
        lookup = {v: i for i, v in enumerate(values)}
        return Target(series.map(lookup).to_numpy(np.int64), kind, values)
    if positive is None:
        if len(values) > 2:
            raise ValueError(f"target column {series.name!r} has {len(values)} classes "
                             f"({values[:6]}...); set data.positive=<the positive value> or "
                             "data.kind=multiclass")
        counts = [int(_matches(series, v).sum()) for v in values]
        positive = values[int(np.argmin(counts))] if counts[0] != counts[1] else values[1]
    matches = _matches(series, positive)
    if not matches.any():
        raise ValueError(f"data.positive={positive!r} never occurs in target column "
                         f"{series.name!r}; its values are {values[:10]}")
    if matches.all():
        raise ValueError(f"every row of target column {series.name!r} is {positive!r}: a single "
                         "class; binary classification needs two")
    negative = [v for v in values if not _matches(pd.Series([v]), positive).iloc[0]]
    return Target(matches.to_numpy(np.float32), kind, [negative[0] if len(negative) == 1
                                                       else "rest", positive])


def target_metrics(kind: str, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every metric of ``kind``: binary ``auc``, ``accuracy`` (threshold 0.5), ``log_loss`` of
    ``pred`` = P(positive); multiclass ``accuracy``, ``log_loss`` of ``pred`` = (n, classes)
    probabilities; regression ``rmse``, ``mae`` of ``pred`` = values."""
    from sklearn.metrics import log_loss, roc_auc_score

    if kind == "regression":
        err = pred.astype(np.float64) - y
        return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}
    if kind == "binary":
        return {"auc": float(roc_auc_score(y, pred)),
                "accuracy": float(np.mean((pred >= 0.5) == (y >= 0.5))),
                "log_loss": float(log_loss(y, np.clip(pred, 1e-7, 1 - 1e-7), labels=[0, 1]))}
    return {"accuracy": float(np.mean(pred.argmax(1) == y)),
            "log_loss": float(log_loss(y, pred, labels=list(range(pred.shape[1]))))}
