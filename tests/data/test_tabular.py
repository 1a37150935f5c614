"""Tabular data: shipped tables and checksums, feature types, labels, splits, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from katbench.data import tabular


def test_shipped_tables_load_with_recorded_rows():
    for name, (_, rows) in tabular.SHIPPED.items():
        assert len(tabular.read_shipped(name)) == rows, name
    assert sum(p.stat().st_size for p in tabular.TABLES_DIR.glob("*.parquet")) < 3e6


def test_damaged_shipped_table_names_file_and_fix(tmp_path, monkeypatch):
    shutil.copy(tabular.TABLES_DIR / "qsar_bio.parquet", tmp_path / "qsar_bio.parquet")
    with open(tmp_path / "qsar_bio.parquet", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    monkeypatch.setattr(tabular, "TABLES_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"qsar_bio\.parquet does not match its SHA-256.*"
                                         r"git checkout"):
        tabular.read_shipped("qsar_bio")
    (tmp_path / "qsar_bio.parquet").unlink()
    with pytest.raises(ValueError, match="qsar_bio.parquet is missing"):
        tabular.read_shipped("qsar_bio")


def test_feature_types_from_dtypes_and_overrides():
    frame = pd.DataFrame({"city": ["a", "b"], "flag": [True, False], "age": [3, 4],
                          "code": [1, 2], "price": ["1.5", " "]})
    cats, conts = tabular.feature_types(frame)
    assert cats == ["city", "flag", "price"] and conts == ["age", "code"]
    cats, conts = tabular.feature_types(frame, categorical=["code"], continuous=["price"])
    assert cats == ["city", "flag", "code"] and conts == ["age", "price"]
    with pytest.raises(ValueError, match="'nope' is not a column"):
        tabular.feature_types(frame, categorical=["nope"])
    with pytest.raises(ValueError, match="both categorical and continuous"):
        tabular.feature_types(frame, categorical=["age"], continuous=["age"])


def test_encode_blastchar_codes_missing_and_coerces_text_numbers():
    table = tabular.encode(tabular.read_shipped("blastchar"), "Churn", "Yes",
                           continuous=["TotalCharges"], drop=["customerID"])
    assert "customerID" not in table.cat_names + table.cont_names
    assert "TotalCharges" in table.cont_names
    assert np.isnan(table.x_cont[:, table.cont_names.index("TotalCharges")]).sum() == 11
    assert table.y.sum() == 1869 and table.x_cat.min() >= 1  # no missing categories there
    assert table.cardinalities[table.cat_names.index("Contract")] == 3 + 1
    shrutime = tabular.encode(tabular.read_shipped("shrutime"), "Exited", 1,
                              drop=["RowNumber", "CustomerId", "Surname"])
    assert (shrutime.x_cat[:, shrutime.cat_names.index("Gender")] == 0).sum() == 54


def test_target_errors_are_clear():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"], "z": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="target column 'label' is not in the table"):
        tabular.encode(frame, "label")
    with pytest.raises(ValueError, match="single class"):
        tabular.encode(frame, "y")
    with pytest.raises(ValueError, match="3 classes.*data.positive"):
        tabular.encode(frame, "z")
    with pytest.raises(ValueError, match="never occurs"):
        tabular.encode(frame, "z", positive="q")
    assert tabular.encode(frame, "z", positive="b").y.tolist() == [0, 1, 0]


def test_split_is_stratified_disjoint_and_reproducible():
    y = tabular.encode(tabular.read_shipped("qsar_bio"), "Class", 2).y
    folds = [tabular.split_indices(y, k) for k in range(5)]
    again = tabular.split_indices(y, 2)
    assert all(np.array_equal(a, b) for a, b in zip(folds[2], again, strict=True))
    tests = np.concatenate([f[2] for f in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(y)))  # the 5 test folds tile the rows
    train, val, test = folds[0]
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert len(train) + len(val) + len(test) == len(y)
    assert abs(len(val) / len(y) - 0.15) < 0.01 and abs(len(test) / len(y) - 0.2) < 0.01
    for part in (train, val, test):
        assert abs(y[part].mean() - y.mean()) < 0.02
    other = tabular.split_indices(y, 0, seed=1)[2]
    assert not np.array_equal(other, test)


def test_stratified_subset_keeps_ratio():
    y = tabular.encode(tabular.read_shipped("1995_income"), "income", ">50K").y
    keep = tabular.stratified_subset(y, 2000, seed=0)
    assert len(keep) == 2000 and abs(y[keep].mean() - y.mean()) < 0.002
    assert np.array_equal(keep, tabular.stratified_subset(y, 2000, seed=0))


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "table.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"cannot read table .*table\.parquet"):
        tabular.read_file(bad)
    with pytest.raises(ValueError, match="does not exist"):
        tabular.read_file(tmp_path / "nope.csv")
    good = tmp_path / "mine.csv"
    pd.DataFrame({"a": [1, 2], "t": [0, 1]}).to_csv(good, index=False)
    frame, target = tabular.load_frame("anything", 12345, good)  # a path beats the id
    assert list(frame.columns) == ["a", "t"] and target is None


def test_unknown_openml_id_is_a_clear_error(tmp_path, monkeypatch):
    import openml

    monkeypatch.setenv("KATBENCH_CACHE", str(tmp_path))
    seen = {}

    def fake_get_dataset(dataset_id, **kwargs):
        seen["cache"] = openml.config.get_cache_directory()
        raise openml.exceptions.OpenMLServerException("Unknown dataset", code=111)

    monkeypatch.setattr(openml.datasets, "get_dataset", fake_get_dataset)
    with pytest.raises(ValueError, match="OpenML has no dataset id 999999999"):
        tabular.load_frame("not_shipped", 999999999)
    assert seen["cache"].startswith(str(tmp_path / "openml"))
    with pytest.raises(ValueError, match="not shipped and has no OpenML id"):
        tabular.load_frame("adult", None)


def test_status_marks_unshipped_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("KATBENCH_CACHE", str(tmp_path))
    assert tabular.status("spambase", 44) == "shipped"
    assert tabular.status("albert", 41147) == "needs download (OpenML 41147)"
    (tmp_path / "openml" / "org" / "openml" / "www" / "datasets" / "41147").mkdir(parents=True)
    assert tabular.status("albert", 41147) == "cached"


def test_quantile_normal_fits_training_rows_only_and_keeps_heavy_tails_in_range():
    rng = np.random.default_rng(0)
    x = np.stack([rng.lognormal(0, 2, 2000), rng.integers(0, 3, 2000)], 1).astype(float)
    x[5, 0] = np.nan
    train = np.arange(1500)
    out = tabular.quantile_normal(x, train)
    assert out.dtype == np.float32 and out[5, 0] == 0.0
    assert abs(out[train, 0].mean()) < 0.05 and abs(out[train, 0].std() - 1) < 0.05
    assert np.abs(out).max() < 5.3                          # a z-score of x[:, 0] reaches ~30
    moved = x.copy()
    moved[1500:, 0] *= 1000                                 # test rows do not move the fit
    assert np.array_equal(tabular.quantile_normal(moved, train)[train], out[train])
    assert set(tabular.SCALINGS) == {"quantile", "standard"}
