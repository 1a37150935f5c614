"""Your own molecules: why a SMILES is unusable, scaffold and random splits, the shipped example
file's computed properties, skipped rows reported once, too many refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from katbench.data import molecules
from katbench.data.cache import sha256_file
from katbench.data.graph import largest_fragment

EXAMPLE = Path(molecules.__file__).with_name("examples") / "molecules.csv"


def test_example_file_matches_readme_and_rdkit():
    from rdkit import Chem
    from rdkit.Chem import Crippen

    readme = EXAMPLE.with_name("README.md").read_text()
    assert sha256_file(EXAMPLE) in readme
    table = pd.read_csv(EXAMPLE)
    assert len(table) == 96 and int(table.halogen.sum()) == 42
    for smiles, logp in zip(table.smiles[:10], table.logp[:10], strict=True):
        mol = largest_fragment(Chem.MolFromSmiles(smiles))
        assert Crippen.MolLogP(mol) == pytest.approx(logp, abs=1e-4)


@pytest.mark.parametrize("smiles, reason", [
    ("CCO", None),
    ("C1CC", "unparsable SMILES 'C1CC'"),
    ("", "no SMILES"),
    (float("nan"), "no SMILES"),
    ("C[Si](C)(C)C", "atom Si (charge 0) is not in the ZINC vocabulary"),
    ("CC(=O)[O-].[Na+]", None),          # the salt's sodium is dropped with its fragment
])
def test_unusable_names_the_reason(smiles, reason):
    assert molecules.unusable(smiles) == reason


def test_scaffold_split_keeps_scaffolds_apart_and_random_split_is_stratified():
    table = pd.read_csv(EXAMPLE)
    smiles = table.smiles.tolist()
    split = molecules.split_molecules(smiles, None, "scaffold", 0.1, 0.1, seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [76, 10, 10]
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(96))
    scaffolds = {s: {molecules.scaffold(smiles[i]) for i in split[s]} for s in split}
    assert not scaffolds["train"] & scaffolds["test"] and not scaffolds["train"] & scaffolds["val"]
    again = molecules.split_molecules(smiles, None, "scaffold", 0.1, 0.1, seed=0)
    assert all((again[s] == split[s]).all() for s in split)
    y = table.halogen.to_numpy()
    rand = molecules.split_molecules(smiles, y, "random", 0.1, 0.1, seed=0)
    assert [round(y[rand[s]].mean(), 1) for s in ("train", "val", "test")] == [0.4, 0.4, 0.4]


def test_unusable_rows_are_skipped_with_one_warning_or_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KATBENCH_CACHE", str(tmp_path / "cache"))
    table = pd.read_csv(EXAMPLE)
    bad = pd.DataFrame({"smiles": ["C1CC", "not a molecule"], "logp": [1.0, 2.0]})
    path = tmp_path / "mols.csv"
    pd.concat([table.iloc[:3], bad, table.iloc[3:]]).to_csv(path, index=False)
    mols = molecules.molecule_splits(str(path), "smiles", "logp")
    err = capsys.readouterr().err
    assert err.count("katbench: skipped") == 1
    assert "skipped 2 of 98 molecules" in err and "row 4: unparsable SMILES 'C1CC'" in err
    assert "row 5: unparsable SMILES 'not a molecule'" in err
    assert "SMILES Parse Error" not in err                      # RDKit's own log is muted
    assert mols.skipped == 2 and mols.target.kind == "regression"
    assert sum(len(mols.splits[s]) for s in ("train", "val", "test")) == 96
    graph = mols.splits["train"][0]
    assert graph.lap_pe.shape[1] == 8 and graph.edge_attr.max() < 4
    with pytest.raises(ValueError, match=r"2 of 98 molecules .* cannot be used \(row 4: "
                                         r".*raise data.max_invalid_fraction \(now 0.01\)"):
        molecules.molecule_splits(str(path), "smiles", "logp", max_invalid_fraction=0.01)
