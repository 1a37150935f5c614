"""Tables of TabTransformer's benchmark (KAT paper Table 9, binary), and your own (any target).

A table comes from one of three sources, tried in this order:

* ``path``: a local CSV or Parquet file (bring your own table; ``target`` names the label).
* a *shipped* table: 8 of the 15 benchmark tables live in ``katbench/data/tables/`` as
  zstd Parquet (provenance, rows and SHA-256 in its README); the checksum is verified on every
  load, so a damaged file fails loudly instead of training on garbage.
* ``openml_id``: downloaded with :func:`openml.datasets.get_dataset` into the katbench cache
  (``$KATBENCH_CACHE/openml``, see :mod:`katbench.data.cache`).

:func:`encode` turns the frame into integer category codes (``0`` = missing, so every column has
``cardinality = levels + 1``), raw float continuous features (``NaN`` = missing) and a 0/1 label.
A column is categorical when its dtype is non-numeric (string, object, category, bool): the
dtype OpenML gives nominal attributes. Task files override either way (``categorical`` /
``continuous``); a continuous override coerces text to numbers, blanks becoming missing. The
target is encoded by :func:`katbench.data.targets.encode_target` (binary for the benchmark's
tables; ``kind="auto"`` infers binary / multiclass / regression for your own).
Continuous features are scaled per column with training statistics only (``data.scaling``:
``standard``, the default, :func:`standardize`; or ``quantile``, :func:`quantile_normal`).
:func:`split_indices` is the TabTransformer protocol: 5 stratified folds, fold ``k`` is the
test set (20 %), and 15 % of all rows from the rest are a stratified validation set (65/15/20).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from katbench.data.cache import cache_root, sha256_file
from katbench.data.targets import Target, encode_target

TABLES_DIR = Path(__file__).with_name("tables")
# name -> (SHA-256 of katbench/data/tables/<name>.parquet, rows); README.md there says where
# each table comes from.
SHIPPED: dict[str, tuple[str, int]] = {
    "1995_income": ("9df5760a0f1a2e654d85aac39077204da81c98feda56dca92910144c508d025e", 48842),
    "bank_marketing": ("796d483aaf50d41a741b10afa35283d7bd6434f725908c3ce6a56df555d08c9e",
                       45211),
    "blastchar": ("3c086c0efbe55602662a6d507cf14b5a62057957315ecb9bfc37e79019d41cf3", 7043),
    "jasmine": ("2adadc7dffadc9c8a4942d3d2fc60149bde165fa6b8dc8faa980604a0fdedb41", 2984),
    "online_shoppers": ("af33bbc804b331cb503480e85672d197c1ba56e55e124d08fb2a6c4a515585a3",
                        12330),
    "qsar_bio": ("88791bab6626edb7ec4bfcc079109307e2ccdf316082cc69580a9b29b328abf5", 1055),
    "shrutime": ("4776eb7b9d1ccd5a6c039945856b63bab8f9780b9535f4049b646217c5d10d99", 10000),
    "spambase": ("54e0f990606a9780c12ec3ee940dfa29c71652830989e0bca55f19ba0a9590c8", 4601),
}


@dataclass
class EncodedTable:
    """A table ready for TabTransformer: codes, raw continuous values and encoded labels."""

    x_cat: np.ndarray            # (n, n_cat) int64; 0 = missing, 1.. = sorted levels
    x_cont: np.ndarray           # (n, n_cont) float64; NaN = missing
    target: Target               # labels (target.y) and their kind
    cat_names: list[str]
    cardinalities: list[int]     # levels + 1 (the missing slot) per categorical column
    cont_names: list[str]

    @property
    def y(self) -> np.ndarray:
        """The encoded labels, ``(n,)``."""
        return self.target.y


def read_shipped(name: str) -> pd.DataFrame:
    """A shipped table, after checking its SHA-256 against :data:`SHIPPED`."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped table {name!r}; shipped: {', '.join(sorted(SHIPPED))}")
    path = TABLES_DIR / f"{name}.parquet"
    digest, rows = SHIPPED[name]
    if not path.is_file():
        raise ValueError(f"shipped table {path} is missing; restore it with "
                         f"`git checkout -- {_repo_relative(path)}` or reinstall katbench")
    if sha256_file(path) != digest:
        raise ValueError(f"shipped table {path} does not match its SHA-256 {digest[:16]}... "
                         f"(damaged or edited); restore it with "
                         f"`git checkout -- {_repo_relative(path)}` or reinstall katbench")
    frame = pd.read_parquet(path)
    if len(frame) != rows:
        raise ValueError(f"shipped table {path} has {len(frame)} rows, expected {rows}")
    return frame


def _repo_relative(path: Path) -> str:
    return str(path.relative_to(TABLES_DIR.parents[2])) if TABLES_DIR.parents[2] in \
        path.parents else str(path)


def read_file(path: str | Path) -> pd.DataFrame:
    """A user's CSV or Parquet table (by suffix; ``.csv.gz`` etc. work too)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"data.path={path} does not exist; pass a CSV or Parquet file")
    reader = pd.read_parquet if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv
    try:
        frame = reader(path)
    except Exception as err:  # parser errors come in many types (pyarrow, pandas, OSError)
        raise ValueError(f"cannot read table {path} ({type(err).__name__}: {err}); pass a "
                         "valid CSV or Parquet file (the suffix picks the parser)") from err
    if frame.empty:
        raise ValueError(f"table {path} has no rows")
    return frame


def read_openml(openml_id: int) -> tuple[pd.DataFrame, str | None]:
    """An OpenML dataset as a frame (features and target), and its default target column.

    Downloads once into ``$KATBENCH_CACHE/openml`` (OpenML's own cache format); later calls
    read the cache and need no network.
    """
    import openml

    openml.config.set_root_cache_directory(str(cache_root("openml")))
    try:
        dataset = openml.datasets.get_dataset(int(openml_id), download_data=True,
                                              download_qualities=False,
                                              download_features_meta_data=False)
    except openml.exceptions.OpenMLServerException as err:
        raise ValueError(f"OpenML has no dataset id {openml_id} ({err}); check data.openml_id "
                         "against https://www.openml.org/d/<id>") from err
    except OSError as err:  # connection errors subclass OSError
        raise RuntimeError(f"cannot download OpenML dataset {openml_id} ({err}); connect to "
                           f"the internet once, or pass data.path=<a local copy>") from err
    frame, *_ = dataset.get_data(target=None)
    return frame, dataset.default_target_attribute


def load_frame(dataset: str | None = None, openml_id: int | None = None,
               path: str | Path | None = None) -> tuple[pd.DataFrame, str | None]:
    """The raw table named by the task settings, and a default target (OpenML's) if known."""
    if path:
        return read_file(path), None
    if dataset in SHIPPED:
        return read_shipped(dataset), None
    if openml_id is not None:
        return read_openml(openml_id)
    raise ValueError(f"dataset {dataset!r} is not shipped and has no OpenML id; set "
                     "data.openml_id=<id> or data.path=<csv/parquet> with data.target=<column>")


def feature_types(frame: pd.DataFrame, categorical: Sequence[str] = (),
                  continuous: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(categorical, continuous) column names: non-numeric dtypes are categorical, unless
    overridden by the task's ``categorical`` / ``continuous`` lists."""
    for column in (*categorical, *continuous):
        if column not in frame.columns:
            raise ValueError(f"feature override {column!r} is not a column; columns: "
                             f"{', '.join(map(str, frame.columns))}")
    both = set(categorical) & set(continuous)
    if both:
        raise ValueError(f"columns {sorted(both)} are listed as both categorical and continuous")
    cats, conts = [], []
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and \
            not pd.api.types.is_bool_dtype(frame[column])
        is_cat = column in categorical or (column not in continuous and not numeric)
        (cats if is_cat else conts).append(column)
    return cats, conts


def encode(frame: pd.DataFrame, target: str, positive: Any = None,
           categorical: Sequence[str] = (), continuous: Sequence[str] = (),
           drop: Sequence[str] = (), kind: str = "binary") -> EncodedTable:
    """Codes, continuous values and labels of ``frame``; rows with a missing target dropped.

    ``kind``: ``binary`` (the benchmark), ``multiclass``, ``regression`` or ``auto``
    (:func:`katbench.data.targets.infer_kind`)."""
    if target not in frame.columns:
        raise ValueError(f"target column {target!r} is not in the table; columns: "
                         f"{', '.join(map(str, frame.columns))} (set data.target)")
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise ValueError(f"data.drop lists {unknown}, which are not columns")
    frame = frame[frame[target].notna()].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"target column {target!r} is empty (every value missing); set "
                         "data.target to a column with values")
    labels = encode_target(frame[target], kind, positive)
    y = labels.y
    features = frame.drop(columns=[target, *drop])
    cats, conts = feature_types(features, categorical, continuous)
    codes, cards = [], []
    for column in cats:
        values = features[column].astype("string")
        levels = sorted(values.dropna().unique())
        lookup = {level: i + 1 for i, level in enumerate(levels)}
        codes.append(values.map(lookup).fillna(0).to_numpy(np.int64))
        cards.append(len(levels) + 1)
    x_cont = np.stack([pd.to_numeric(features[c], errors="coerce").to_numpy(np.float64)
                       for c in conts], 1) if conts else np.zeros((len(y), 0))
    x_cat = np.stack(codes, 1) if codes else np.zeros((len(y), 0), np.int64)
    return EncodedTable(x_cat, x_cont, labels, cats, cards, conts)


def stratified_subset(y: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``max_rows`` rows keeping the ratio of the strata ``y`` (class labels,
    or :attr:`Target.strata`), all rows when ``None``."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    if max_rows is None or max_rows >= len(y):
        return index
    keep, _ = train_test_split(index, train_size=int(max_rows), stratify=y, random_state=seed)
    return np.sort(keep)


def split_indices(y: np.ndarray, fold: int, n_folds: int = 5, val_fraction: float = 0.15,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices of fold ``fold``: stratified on ``y`` (class labels, or
    :attr:`Target.strata`), the same for every mixer.

    Test is fold ``fold`` of ``StratifiedKFold(n_folds, shuffle, seed)``; ``val_fraction`` of
    all rows is then drawn, stratified, from the other folds (TabTransformer: 65/15/20).
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    if not 0 <= fold < n_folds:
        raise ValueError(f"fold={fold} is outside 0..{n_folds - 1}")
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < n_folds:
        raise ValueError(f"label {labels[counts.argmin()]!r} has {counts.min()} rows; a stratified "
                         f"{n_folds}-fold split needs at least {n_folds} per label: set "
                         "split.n_folds lower, or merge or drop the rare classes")
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    rest, test = list(folds)[fold]
    val_share = val_fraction / (1 - 1 / n_folds)
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest],
                                  random_state=seed + fold)
    return np.sort(train), np.sort(val), np.sort(test)


def standardize(x_cont: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Float32 features with missing values set to the training mean, scaled to unit variance
    with training statistics only (no test leakage)."""
    mean = np.nanmean(x_cont[train], 0) if len(x_cont.T) else np.zeros(0)
    mean = np.nan_to_num(mean)
    std = np.nan_to_num(np.nanstd(x_cont[train], 0)) if len(x_cont.T) else np.zeros(0)
    filled = np.where(np.isnan(x_cont), mean, x_cont)
    return ((filled - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def quantile_normal(x_cont: np.ndarray, train: np.ndarray, n_quantiles: int = 1000,
                    seed: int = 0) -> np.ndarray:
    """Float32 features mapped, column by column, through the training rows' empirical CDF onto a
    standard normal (``sklearn.preprocessing.QuantileTransformer``); missing values become 0, the
    training median. Unlike :func:`standardize` it keeps heavy tails (call durations, balances,
    page values) from squeezing most rows into a sliver around the mean."""
    from sklearn.preprocessing import QuantileTransformer

    if not x_cont.shape[1]:
        return x_cont.astype(np.float32)
    transform = QuantileTransformer(n_quantiles=min(n_quantiles, len(train)),
                                    output_distribution="normal", subsample=None,
                                    random_state=seed)
    transform.fit(x_cont[train])   # NaN is ignored when fitting and kept when transforming
    return np.nan_to_num(transform.transform(x_cont), nan=0.0).astype(np.float32)


# data.scaling -> per-column scaling of continuous features, fitted on the training rows
SCALINGS = {"quantile": quantile_normal, "standard": standardize}


class TensorBatches:
    """Mini-batches of a dict of equal-length tensors; reshuffled every pass when ``shuffle``.

    Index slicing of whole tensors (no per-row collation), so an epoch over 40k rows costs
    milliseconds of loading. The shuffle order comes from its own generator seeded once, so a
    run is reproducible whatever else draws random numbers.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors have different lengths {sizes}")
        self.tensors, self.batch_size, self.shuffle = tensors, int(batch_size), shuffle
        self.n = sizes.pop()
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            if order is None:
                yield {k: t[start:start + self.batch_size] for k, t in self.tensors.items()}
            else:
                rows = order[start:start + self.batch_size]
                yield {k: t[rows] for k, t in self.tensors.items()}


def status(dataset: str, openml_id: int | None) -> str:
    """Where a benchmark table comes from here: ``shipped``, ``cached`` or ``needs download``."""
    if dataset in SHIPPED:
        return "shipped"
    if openml_id is not None and (cache_root("openml") / "org" / "openml" / "www" / "datasets"
                                  / str(openml_id)).is_dir():
        return "cached"
    return "needs download" + (f" (OpenML {openml_id})" if openml_id is not None else
                               " (no OpenML id known)")
