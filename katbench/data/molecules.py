"""Your own molecules: a CSV (or Parquet) of SMILES and a target -> ZINC-style graphs, split.

:func:`molecule_splits` reads the file (:func:`katbench.data.tabular.read_file`), encodes the
target (:func:`katbench.data.targets.encode_target`: a regression value, or binary), and checks
every SMILES with RDKit: a molecule is skipped when RDKit cannot parse it, when it has no atoms,
or when an atom is outside the ZINC benchmark's vocabulary (elements such as Si, B, Se or
metals). Skipped rows are reported in one warning naming the first few; when more than
``max_invalid_fraction`` of the rows are skipped the run stops with an error instead. The rest
become the graphs of ZINC (:func:`katbench.data.graph.smiles_to_graph`: largest fragment, 28
atom and 4 bond types, Laplacian PE), cached under ``$KATBENCH_CACHE/graph/mol_csv`` with a key
of the file's SHA-256 and every setting.

Splits (fixed by ``split_seed``, the same for every mixer and run seed): ``scaffold`` groups
molecules by Bemis-Murcko scaffold and gives whole groups to train, then validation, then test
(groups larger than half the validation or test size first, each kind in a seeded random order,
as chemprop's balanced scaffold split), so test scaffolds are unseen in training; ``random`` is a
permutation, stratified by class for a binary target.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch_geometric.data import Data

from katbench.data.cache import cache_root, params_key, sha256_file
from katbench.data.graph import (
    SPLITS,
    SealedDataset,
    largest_fragment,
    smiles_to_graph,
    zinc_atom_index,
)
from katbench.data.tabular import read_file
from katbench.data.targets import Target, encode_target

if TYPE_CHECKING:
    import pandas as pd

SPLIT_KINDS = ("scaffold", "random")
SHOWN = 5   # skipped rows named in the warning or error


@dataclass
class MoleculeSplits:
    """Graph datasets per split and the encoded target of the usable molecules."""

    splits: dict[str, Any]
    target: Target
    skipped: int


@contextmanager
def _quiet_rdkit() -> Any:
    """RDKit logs every bad SMILES to stderr; the skipped rows are reported once instead."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def unusable(smiles: Any) -> str | None:
    """Why a SMILES cannot become a ZINC-style graph, or ``None`` when it can."""
    from rdkit import Chem

    if not isinstance(smiles, str) or not smiles.strip():
        return "no SMILES"
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return f"unparsable SMILES {smiles!r}"
    if mol.GetNumAtoms() == 0:
        return f"no atoms in {smiles!r}"
    for atom in largest_fragment(mol).GetAtoms():
        if zinc_atom_index(atom) is None:
            return f"atom {atom.GetSymbol()} (charge {atom.GetFormalCharge()}) is not in the " \
                   "ZINC vocabulary"
    return None


def scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES of the largest fragment (``""`` for acyclic molecules)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = largest_fragment(Chem.MolFromSmiles(smiles))
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def split_molecules(smiles: list[str], strata: np.ndarray | None, how: str, val_fraction: float,
                    test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices per split (see the module docstring); ``strata`` stratifies ``random``."""
    from sklearn.model_selection import train_test_split

    n = len(smiles)
    n_val, n_test = round(val_fraction * n), round(test_fraction * n)
    if min(n_val, n_test) < 1 or n - n_val - n_test < 1:
        raise ValueError(f"{n} usable molecules are too few for validation {val_fraction} and "
                         f"test {test_fraction} fractions; use a larger file")
    rng = np.random.default_rng(seed)
    if how == "random":
        index = np.arange(n)
        rest, test = train_test_split(index, test_size=n_test, random_state=seed,
                                      stratify=strata)
        train, val = train_test_split(rest, test_size=n_val, random_state=seed,
                                      stratify=None if strata is None else strata[rest])
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(scaffold(s), []).append(i)
    sets = list(groups.values())
    big = [s for s in sets if len(s) > n_val / 2 or len(s) > n_test / 2]
    small = [s for s in sets if not (len(s) > n_val / 2 or len(s) > n_test / 2)]
    order = [*(big[i] for i in rng.permutation(len(big))),
             *(small[i] for i in rng.permutation(len(small)))]
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for members in order:
        if len(out["train"]) + len(members) <= n - n_val - n_test:
            out["train"] += members
        elif len(out["val"]) + len(members) <= n_val:
            out["val"] += members
        else:
            out["test"] += members
    return {s: np.sort(np.array(v, dtype=np.int64)) for s, v in out.items()}


class MoleculeCSV(SealedDataset):
    """One split of a user's molecules as graphs, cached by a key of the file and settings."""

    def __init__(self, key: str, rows: dict[str, list[tuple[str, float]]], split: str,
                 pe_dim: int, root: Path | None = None) -> None:
        self.key, self.rows, self.pe_dim = key, rows, pe_dim
        super().__init__(root or cache_root("graph", "mol_csv"), split)

    @property
    def raw_file_names(self) -> list[str]:  # read by molecule_splits, nothing to fetch
        return []

    def download(self) -> None:
        pass

    def build(self) -> dict[str, list[Data]]:
        return {s: [smiles_to_graph(m, t, self.pe_dim) for m, t in self.rows[s]] for s in SPLITS}


def _usable_rows(path: str, smiles: str, target: str,
                 max_invalid_fraction: float) -> tuple[pd.DataFrame, int]:
    """The rows of ``path`` with a target and a usable SMILES, and how many were skipped for
    their SMILES (each named on stderr); raises where a column is missing, no target is given
    or more than ``max_invalid_fraction`` of the molecules cannot be used."""
    frame = read_file(path)
    for key, column in (("data.smiles", smiles), ("data.target", target)):
        if column is None or column not in frame.columns:
            raise ValueError(f"{key}={column!r} is not a column of {path}; columns: "
                             f"{', '.join(map(str, frame.columns))} (set {key}=<column>)")
    frame = frame[frame[target].notna()].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"target column {target!r} of {path} has no values; set data.target")
    with _quiet_rdkit():
        reasons = [unusable(s) for s in frame[smiles]]
    bad = [(i + 1, why) for i, why in enumerate(reasons) if why is not None]
    named = "; ".join(f"row {row}: {why}" for row, why in bad[:SHOWN]) + \
        (f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
    if len(bad) > max_invalid_fraction * len(frame):
        raise ValueError(f"{len(bad)} of {len(frame)} molecules of {path} cannot be used ({named}"
                         f"); fix or remove those rows, or raise data.max_invalid_fraction "
                         f"(now {max_invalid_fraction})")
    if bad:
        print(f"katbench: skipped {len(bad)} of {len(frame)} molecules of {path} (rows counted "
              f"from 1 after the header): {named}", file=sys.stderr, flush=True)
    return frame[[why is None for why in reasons]].reset_index(drop=True), len(bad)


def molecule_splits(path: str, smiles: str, target: str, *, kind: str = "auto",
                    positive: Any = None, split: str = "scaffold", val_fraction: float = 0.1,
                    test_fraction: float = 0.1, split_seed: int = 0,
                    max_invalid_fraction: float = 0.1, pe_dim: int = 8) -> MoleculeSplits:
    """The usable molecules of ``path`` as graph datasets per split, and their target.

    Raises a ``ValueError`` naming the problem and the fix for a missing file or column, a
    target with one value or more than two classes, too many unusable SMILES, or a split that
    leaves one class in the validation or test set of a binary target.
    """
    if split not in SPLIT_KINDS:
        raise ValueError(f"data.split={split!r}; choose {' or '.join(SPLIT_KINDS)}")
    frame, skipped = _usable_rows(path, smiles, target, max_invalid_fraction)
    labels = encode_target(frame[target], kind, positive)
    if labels.kind == "multiclass":
        raise ValueError(f"target column {target!r} has {len(labels.classes)} classes; mol_csv "
                         "predicts a number (data.kind=regression) or two classes "
                         "(data.kind=binary with data.positive=<class>)")
    strata = labels.strata if labels.kind == "binary" else None
    mols = frame[smiles].tolist()
    with _quiet_rdkit():
        index = split_molecules(mols, strata, split, val_fraction, test_fraction, split_seed)
    if labels.kind == "binary":
        for name in ("val", "test"):
            if len(np.unique(labels.y[index[name]])) < 2:
                raise ValueError(f"the {split} split leaves one class in the {name} set, so its "
                                 "AUC is undefined; use data.split=random or more molecules")
    key = params_key({"sha256": sha256_file(Path(path).expanduser()), "smiles": smiles,
                      "target": target, "kind": labels.kind,
                      "classes": [str(c) for c in labels.classes], "split": split,
                      "val": val_fraction, "test": test_fraction, "split_seed": split_seed,
                      "pe_dim": pe_dim})
    rows = {s: [(mols[i], float(labels.y[i])) for i in index[s]] for s in SPLITS}
    with _quiet_rdkit():
        data = {s: MoleculeCSV(key, rows, s, pe_dim) for s in SPLITS}
    return MoleculeSplits(data, labels, skipped)
