r"""Graph datasets of the Graph Transformer benchmark (Dwivedi & Bresson, 2020).

Every graph carries ``lap_pe`` (``(num_nodes, pe_dim)``): the eigenvectors 2..k+1 of the
symmetric normalised Laplacian :math:`L = I - D^{-1/2} A D^{-1/2}` in increasing eigenvalue
order, zero-padded on graphs with fewer than ``k + 1`` nodes (signs are arbitrary; the model
flips them at random in training).

* ``zinc``: the 12k subset through :class:`torch_geometric.datasets.ZINC` (downloads).
* ``micro_zinc``: the offline stand-in, 1002 real ZINC molecules shipped in
  ``katbench/data/zinc/`` (see its README), SMILES -> graph with RDKit in the benchmark's
  28-atom / 4-bond vocabularies. It is *not* the benchmark split: never report it as ZINC.
* ``pattern`` / ``cluster``: stochastic-block-model graphs from :func:`generate_sbm`, the
  benchmark's generator with its published parameters (``PATTERN`` / ``CLUSTER``); PyG's
  :class:`~torch_geometric.datasets.GNNBenchmarkDataset` with ``source: pyg`` (downloads).

Generated and converted datasets are PyG ``InMemoryDataset`` s cached under
``$KATBENCH_CACHE/graph`` (:mod:`katbench.data.cache`): file names carry a hash of every
generation parameter, and each file's SHA-256 is checked on load; a corrupt file is rebuilt.

:class:`GraphLoader` batches a split from one store of concatenated tensors, held on the
training device: a batch is a handful of gathers there, with no per-graph Python objects, no
host-to-device copy and no wait for the GPU (PyG's ``DataLoader`` collates on the host and
copies every batch, which dominates the step time of the ~500k-parameter benchmark models).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.collate import collate

from katbench.data.cache import cache_root, discard_if_corrupt, params_key, seal, sha256_file

SPLITS = ("train", "val", "test")
ZINC_DIR = Path(__file__).with_name("zinc")
MICRO_ZINC_SHA256 = "91e8a9d9f477f46bf01ded7ad089084c286ac381857e647bde581d9bfd4bece2"
# The benchmark's vocabularies (benchmarking-gnns ZINC atom_dict / bond_dict): element, explicit
# hydrogens of bracket atoms and charge; there is no uncharged 'N H1', so aromatic [nH] is 'N'.
ZINC_ATOMS = ("C", "O", "N", "F", "C H1", "S", "Cl", "O -", "N H1 +", "Br", "N H3 +", "N H2 +",
              "N +", "N -", "S -", "I", "P", "O H1 +", "N H1 -", "O +", "S +", "P H1", "P H2",
              "C H2 -", "P +", "S H1 +", "C H1 -", "P H1 +")
ZINC_BONDS = ("NONE", "SINGLE", "DOUBLE", "TRIPLE")
# Published generator settings (benchmarking-gnns data/SBMs notebooks; Dwivedi et al., JMLR 2023).
# PATTERN: q = 0.35 and q_pattern = 0.5, as in generate_SBM_PATTERN.ipynb (its printed config:
# 'q_pattern': 0.5). The released data's ~6.1k directed edges and ~118.9 nodes per graph come
# from its 100 sampled pattern sizes averaging ~21.4 (expected 19.5), not from a larger
# q_pattern: 0.55 lets node degree alone find the pattern (docs/graph.md).
PATTERN = {"communities": 5, "size_min": 5, "size_max": 35, "p": 0.5, "q": 0.35,
           "p_pattern": 0.5, "q_pattern": 0.5, "vocab_size": 3, "n_patterns": 100,
           "train_per_pattern": 100, "eval_per_pattern": 20}
CLUSTER = {"communities": 6, "size_min": 5, "size_max": 35, "p": 0.55, "q": 0.25,
           "n_train": 10000, "n_val": 1000, "n_test": 1000}


def laplacian_pe(edge_index: torch.Tensor, num_nodes: int, k: int) -> torch.Tensor:
    """The ``k`` Laplacian eigenvectors after the trivial one, ``(num_nodes, k)`` float32."""
    # One thread: on matrices this small, threads fighting over shared cores cost ~4x (eigh
    # ~40x), and datasets are built graph by graph.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        adj = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
        adj[edge_index[0], edge_index[1]] = 1.0
        inv_sqrt = adj.sum(1).clamp(min=1) ** -0.5
        lap = (torch.eye(num_nodes, dtype=torch.float64)
               - inv_sqrt[:, None] * adj * inv_sqrt[None, :])
        _, vecs = torch.linalg.eigh(lap)
    finally:
        torch.set_num_threads(threads)
    pe = torch.zeros(num_nodes, k)
    take = min(k, num_nodes - 1)
    pe[:, :take] = vecs[:, 1:take + 1].float()
    return pe


# Graphs per worker process below which laplacian_pes stays in this process (a worker costs a
# fork; one eigh of a ~117-node graph ~1.4 ms).
PE_GRAPHS_PER_WORKER = 1000


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def laplacian_pes(edges: Sequence[torch.Tensor], num_nodes: Sequence[int], k: int
                  ) -> list[torch.Tensor]:
    """:func:`laplacian_pe` of every graph, in up to 16 forked worker processes when there are
    thousands (bitwise the same as one by one: each is one single-threaded eigh). Building
    PATTERN or CLUSTER is mostly these eigendecompositions."""
    workers = min(_usable_cores(), 16, len(edges) // PE_GRAPHS_PER_WORKER)
    if workers < 2:
        return [laplacian_pe(e, n, k) for e, n in zip(edges, num_nodes, strict=True)]
    # NumPy arrays between the processes: tensors would each travel as a shared-memory segment
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pes = pool.map(_laplacian_pe_array, [e.numpy() for e in edges], num_nodes,
                       itertools.repeat(k), chunksize=max(1, len(edges) // (4 * workers)))
        return [torch.from_numpy(pe) for pe in pes]


def _laplacian_pe_array(edge_index: np.ndarray, num_nodes: int, k: int) -> np.ndarray:
    return laplacian_pe(torch.from_numpy(edge_index), num_nodes, k).numpy()


def _sparse(adj: np.ndarray, x: np.ndarray, y: np.ndarray
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(edge index, node features, node labels) of a graph given by its dense adjacency."""
    return torch.from_numpy(np.stack(np.nonzero(adj))).long(), x, y


def _splits_to_data(splits: dict[str, list[tuple[torch.Tensor, np.ndarray, np.ndarray]]],
                    pe_dim: int) -> dict[str, list[Data]]:
    """PyG ``Data`` with ``lap_pe`` of every split's (edge index, node features, node labels)
    triples (their PEs computed together)."""
    graphs = [g for split in SPLITS for g in splits[split]]
    edges, sizes = [g[0] for g in graphs], [len(g[1]) for g in graphs]
    pes = laplacian_pes(edges, sizes, pe_dim)
    data = iter([Data(x=torch.from_numpy(x).long().view(n, 1), edge_index=edge_index,
                      y=torch.from_numpy(y).long(), lap_pe=pe, num_nodes=n)
                 for (edge_index, x, y), n, pe in zip(graphs, sizes, pes, strict=True)])
    return {split: list(itertools.islice(data, len(splits[split]))) for split in SPLITS}


def _block_model(rng: np.random.Generator, sizes: np.ndarray, p: float, q: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 0/1 adjacency with P(edge) = p within a block and q across; block labels."""
    c = np.repeat(np.arange(len(sizes)), sizes)
    prob = np.where(c[:, None] == c[None, :], p, q)
    upper = np.triu(rng.random(prob.shape) < prob, 1)
    return (upper | upper.T).astype(np.int8), c


def generate_sbm(name: str, params: dict[str, Any], seed: int, pe_dim: int
                 ) -> dict[str, list[Data]]:
    """``{split: [Data]}`` of the benchmark's PATTERN or CLUSTER generator.

    CLUSTER: ``communities`` blocks of sizes uniform in ``[size_min, size_max)``, edges with
    p within / q across; node labels are the blocks, and one random node per block has feature
    ``block + 1`` (all others 0). PATTERN: 5 such blocks with features uniform in
    ``{0, .., vocab_size-1}``; ``n_patterns`` random patterns (size uniform in the same range,
    internal density ``p_pattern``, fixed features) are each planted in ``train_per_pattern``
    training and ``eval_per_pattern`` validation and test graphs, joined to every other node
    with probability ``q_pattern``; label 1 marks pattern nodes. Nodes are shuffled.
    """
    generators = {"cluster": _cluster_graphs, "pattern": _pattern_graphs}
    if name not in generators:
        raise ValueError(f"unknown SBM dataset {name!r}; use 'pattern' or 'cluster'")
    return _splits_to_data(generators[name](np.random.default_rng(seed), params), pe_dim)


SBMGraphs = dict[str, list[tuple[torch.Tensor, np.ndarray, np.ndarray]]]


def _community_graph(rng: np.random.Generator, params: dict[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One graph of ``communities`` blocks (sizes uniform in ``[size_min, size_max)``, edges
    with p within and q across): adjacency and block labels."""
    sizes = rng.integers(params["size_min"], params["size_max"], size=params["communities"])
    return _block_model(rng, sizes, params["p"], params["q"])


def _cluster_graphs(rng: np.random.Generator, params: dict[str, Any]) -> SBMGraphs:
    """CLUSTER's graphs per split: shuffled community graphs labelled by block, one random
    node per block carrying the feature ``block + 1``."""
    out: SBMGraphs = {s: [] for s in SPLITS}
    for split in SPLITS:
        for _ in range(params[f"n_{split}"]):
            adj, c = _community_graph(rng, params)
            perm = rng.permutation(len(c))
            adj, c = adj[perm][:, perm], c[perm]
            x = np.zeros(len(c), dtype=np.int64)
            for r in range(params["communities"]):
                x[rng.choice(np.flatnonzero(c == r))] = r + 1
            out[split].append(_sparse(adj, x, c))
    return out


def _pattern_graphs(rng: np.random.Generator, params: dict[str, Any]) -> SBMGraphs:
    """PATTERN's graphs per split: each random pattern planted in community graphs of random
    features, joined to their nodes with probability ``q_pattern``; label 1 marks its nodes."""
    out: SBMGraphs = {s: [] for s in SPLITS}
    counts = {"train": params["train_per_pattern"], "val": params["eval_per_pattern"],
              "test": params["eval_per_pattern"]}
    for _ in range(params["n_patterns"]):
        m = int(rng.integers(params["size_min"], params["size_max"]))
        w0, _ = _block_model(rng, np.array([m]), params["p_pattern"], params["p_pattern"])
        u0 = rng.integers(params["vocab_size"], size=m)
        for split in SPLITS:
            for _ in range(counts[split]):
                adj, c = _community_graph(rng, params)
                u = rng.integers(params["vocab_size"], size=len(c))
                link = (rng.random((m, len(c))) < params["q_pattern"]).astype(np.int8)
                adj = np.block([[adj, link.T], [link, w0]])
                label = np.concatenate([np.zeros(len(c)), np.ones(m)]).astype(np.int64)
                x = np.concatenate([u, u0])
                perm = rng.permutation(len(label))
                out[split].append(_sparse(adj[perm][:, perm], x[perm], label[perm]))
    return out


def largest_fragment(mol: Any) -> Any:
    """The RDKit molecule's largest fragment (salts and counter-ions dropped)."""
    from rdkit import Chem

    return max(Chem.GetMolFrags(mol, asMols=True), key=lambda f: f.GetNumAtoms())


def zinc_atom_index(atom: Any) -> int | None:
    """Index of an RDKit atom in :data:`ZINC_ATOMS` (element, bracket hydrogens and charge, else
    element + charge, else element), or ``None`` when the vocabulary lacks it."""
    charge = atom.GetFormalCharge()
    sign = "" if charge == 0 else " +" if charge > 0 else " -"
    hs = atom.GetNumExplicitHs()
    for token in (f"{atom.GetSymbol()}{f' H{hs}' if hs else ''}{sign}",
                  f"{atom.GetSymbol()}{sign}", atom.GetSymbol()):
        if token in ZINC_ATOMS:
            return ZINC_ATOMS.index(token)
    return None


def smiles_to_graph(smiles: str, target: float, pe_dim: int) -> Data:
    """Largest fragment of ``smiles`` as a kekulised graph in the ZINC benchmark vocabularies.

    ``x`` (``(n, 1)``) indexes :data:`ZINC_ATOMS` by element, bracket hydrogens and charge,
    falling back to element + charge, then element, for tokens the vocabulary lacks (aromatic
    ``[nH]`` -> ``'N'``); ``edge_attr`` indexes :data:`ZINC_BONDS`; both edge directions.
    """
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    mol = largest_fragment(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    atoms = []
    for atom in mol.GetAtoms():
        index = zinc_atom_index(atom)
        if index is None:
            raise ValueError(f"atom {atom.GetSymbol()} (charge {atom.GetFormalCharge()}) of "
                             f"{smiles!r} is not in the ZINC vocabulary")
        atoms.append(index)
    src, dst, bonds = [], [], []
    for bond in mol.GetBonds():
        i, j, kind = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), str(bond.GetBondType())
        src += [i, j]
        dst += [j, i]
        bonds += [ZINC_BONDS.index(kind)] * 2
    edge_index = torch.tensor([src, dst], dtype=torch.long)
    n = len(atoms)
    return Data(x=torch.tensor(atoms).view(n, 1), edge_index=edge_index,
                edge_attr=torch.tensor(bonds, dtype=torch.long),
                y=torch.tensor([target], dtype=torch.float),
                lap_pe=laplacian_pe(edge_index, n, pe_dim), num_nodes=n)


class SealedDataset(InMemoryDataset):
    """An ``InMemoryDataset`` of three split files, each checksummed by :mod:`katbench.data.cache`.

    Subclasses set ``key`` (hash of everything the files depend on) and implement
    ``build() -> {split: [Data]}``; corrupt or unsealed files are discarded before PyG decides
    whether to ``process()``, so they are rebuilt rather than loaded.
    """

    key: str

    def __init__(self, root: Path, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; use one of {SPLITS}")
        for name in self.processed_file_names:
            discard_if_corrupt(Path(root) / "processed" / name)
        super().__init__(str(root))
        self.load(self.processed_paths[SPLITS.index(split)])

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{split}-{self.key}.pt" for split in SPLITS]

    def build(self) -> dict[str, list[Data]]:
        raise NotImplementedError

    def process(self) -> None:
        splits = self.build()
        for split, path in zip(SPLITS, self.processed_paths, strict=True):
            tmp = f"{path}.tmp{os.getpid()}"
            self.save(splits[split], tmp)
            os.replace(tmp, path)
            seal(Path(path))


class SBMDataset(SealedDataset):
    """PATTERN or CLUSTER from :func:`generate_sbm` (seeded), cached on disk."""

    def __init__(self, name: str, split: str, params: dict[str, Any], seed: int, pe_dim: int,
                 root: Path | None = None) -> None:
        self.name, self.params, self.seed, self.pe_dim = name, dict(params), seed, pe_dim
        self.key = params_key({"name": name, **self.params, "seed": seed, "pe_dim": pe_dim})
        super().__init__(root or cache_root("graph", name), split)

    @property
    def raw_file_names(self) -> list[str]:  # generated: nothing to fetch
        return []

    def download(self) -> None:
        pass

    def build(self) -> dict[str, list[Data]]:
        return generate_sbm(self.name, self.params, self.seed, self.pe_dim)


class MicroZINC(SealedDataset):
    """The shipped 1002-molecule micro-ZINC (stand-in for the 12k subset), split 80/10/10 by a
    fixed permutation (the same for every run), target = constrained solubility ``score``."""

    def __init__(self, split: str, pe_dim: int, root: Path | None = None) -> None:
        self.pe_dim = pe_dim
        self.key = params_key({"csv": MICRO_ZINC_SHA256, "pe_dim": pe_dim, "split_seed": 0})
        super().__init__(root or cache_root("graph", "micro_zinc"), split)

    @property
    def raw_dir(self) -> str:
        return str(ZINC_DIR)

    @property
    def raw_file_names(self) -> list[str]:
        return ["micro_zinc.csv"]

    def download(self) -> None:
        raise FileNotFoundError(f"{ZINC_DIR / 'micro_zinc.csv'} is missing; reinstall katbench")

    def build(self) -> dict[str, list[Data]]:
        import pandas as pd

        path = ZINC_DIR / "micro_zinc.csv"
        if sha256_file(path) != MICRO_ZINC_SHA256:
            raise ValueError(f"{path} does not match the checksum in its README; restore it "
                             "from git (git checkout -- katbench/data/zinc/micro_zinc.csv)")
        table = pd.read_csv(path)
        graphs = [smiles_to_graph(s, t, self.pe_dim) for s, t in zip(table.SMILES, table.score,
                                                                     strict=True)]
        order = np.random.default_rng(0).permutation(len(graphs))
        n_val = n_test = len(graphs) // 10
        cut = {"train": order[n_val + n_test:], "val": order[:n_val],
               "test": order[n_val:n_val + n_test]}
        return {s: [graphs[i] for i in cut[s]] for s in SPLITS}


class AddLaplacianPE:
    """PyG ``pre_transform`` for downloaded datasets: ``lap_pe`` and integer node types."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, data: Data) -> Data:
        if data.x.is_floating_point():  # GNNBenchmarkDataset: one-hot node features
            data.x = data.x.argmax(-1, keepdim=True)
        data.lap_pe = laplacian_pe(data.edge_index, data.num_nodes, self.k)
        return data

    def __repr__(self) -> str:  # PyG compares it with the one the cache was built with
        return f"{type(self).__name__}(k={self.k})"


def load_split(dataset: str, split: str, pe_dim: int, params: dict[str, Any] | None = None,
               seed: int = 0) -> Any:
    """One split of ``dataset`` (``zinc``, ``micro_zinc``, ``pattern``, ``cluster``,
    ``pyg_pattern``, ``pyg_cluster``) with ``lap_pe`` on every graph."""
    if dataset == "micro_zinc":
        return MicroZINC(split, pe_dim)
    if dataset in ("pattern", "cluster"):
        return SBMDataset(dataset, split, params or {}, seed, pe_dim)
    from torch_geometric.datasets import ZINC, GNNBenchmarkDataset

    add_pe = AddLaplacianPE(pe_dim)
    root = cache_root("graph", f"{dataset}-pe{pe_dim}")
    try:
        if dataset == "zinc":
            for s in SPLITS:
                discard_if_corrupt(root / "subset" / "processed" / f"{s}.pt")
            data = ZINC(str(root), subset=True, split=split, pre_transform=add_pe)
        elif dataset in ("pyg_pattern", "pyg_cluster"):
            for s in SPLITS:
                discard_if_corrupt(root / dataset[4:].upper() / "processed" / f"{s}_data.pt")
            data = GNNBenchmarkDataset(str(root), dataset[4:].upper(), split=split,
                                       pre_transform=add_pe)
        else:
            raise ValueError(f"task.dataset={dataset!r}; use zinc, micro_zinc, pattern, cluster, "
                             "pyg_pattern or pyg_cluster")
    except OSError as err:
        raise ValueError(f"could not download {dataset} ({err}); offline, use "
                         "task.dataset=micro_zinc (ZINC stand-in) or the generated "
                         "pattern/cluster") from err
    for path in data.processed_paths:
        if Path(path).suffix == ".pt" and not Path(path + ".sha256").exists():
            seal(Path(path))
    return data


def adjacency(node_graph: torch.Tensor, slot: torch.Tensor, edge_index: torch.Tensor,
              graphs: int, size: int, dtype: torch.dtype) -> torch.Tensor:
    """``(graphs, size, size)`` matrices, 1 at ``[b, i, j]`` where graph ``b`` has the edge
    from its node ``j`` to its node ``i`` (an edge given twice counts once); ``node_graph`` and
    ``slot`` give each node's graph and position, ``edge_index`` uses batch-wide numbers."""
    out = torch.zeros(graphs, size, size, dtype=dtype, device=slot.device)
    src, dst = edge_index
    out[node_graph[dst], slot[dst], slot[src]] = 1.0
    return out


@dataclasses.dataclass
class GraphBatch:
    """Graphs of one batch as disjoint components: the fields of a PyG ``Batch`` the models read,
    plus where each node sits in its graph.

    ``edge_index`` uses batch-wide node numbers; ``batch`` maps each node to its graph
    (``0..num_graphs-1``) and ``slot`` to its number inside that graph; ``max_nodes`` is the
    largest graph's node count; ``y`` is per node or per graph, as stored; ``edge_attr`` is
    ``None`` when the graphs have no edge features.

    A *padded* batch (``GraphLoader(pad_nodes=M)``, node-level data without edge features) has
    the same shapes every step: ``G = batch_size`` graphs of ``M`` rows each, node ``slot`` of
    graph ``b`` at row ``b * M + slot``; ``x``, ``lap_pe`` and ``y`` hold zeros on the other
    rows, ``node_mask`` (``(G * M,)``, float) is 1 on the real ones, ``adjacency[b, i, j]`` is
    1 where graph ``b`` has the edge from node ``j`` to node ``i``, ``batch`` and ``slot`` are
    every row's graph and position, ``edge_index`` is empty, ``max_nodes`` is ``M`` and
    ``num_graphs`` counts the real graphs (the last batch of an epoch has fewer).
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    lap_pe: torch.Tensor
    y: torch.Tensor
    batch: torch.Tensor
    slot: torch.Tensor
    edge_attr: torch.Tensor | None
    num_graphs: int
    max_nodes: int
    node_mask: torch.Tensor | None = None
    adjacency: torch.Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def padded(self) -> bool:
        """Whether the batch has the fixed padded layout (see the class docstring)."""
        return self.node_mask is not None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GraphBatch:
        """The batch with every tensor on ``device`` (itself when already there)."""
        if self.x.device == torch.device(device):
            return self
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), torch.Tensor)})


class GraphLoader:
    """Batches of ``batch_size`` whole graphs (the last one smaller), in a fresh random order
    each epoch when ``shuffle``, gathered from the concatenated graphs on the loader's device.

    ``graphs`` is any sequence of PyG ``Data`` with ``x``, ``edge_index``, ``lap_pe``, ``y`` and
    optionally ``edge_attr``. :meth:`to` moves the store to the training device (the trainer
    calls it); the order comes from ``generator`` (seeded from torch's global RNG at
    construction), which the trainer saves in checkpoints, so a resumed run sees the same
    batches. Batches equal ``Batch.from_data_list`` of the same graphs. With ``pad_nodes=M``
    every batch is padded to ``batch_size`` graphs of ``M`` rows (:class:`GraphBatch`): one
    shape for every step, as CUDA graphs need (node-level data without edge features).
    """

    def __init__(self, graphs: Sequence[Data], batch_size: int, shuffle: bool = False,
                 pad_nodes: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; use a positive number of graphs")
        data, slices, _ = collate(Data, [graphs[i] for i in range(len(graphs))], increment=False,
                                  add_batch=False)
        self.batch_size, self.shuffle, self.num_graphs = batch_size, shuffle, len(graphs)
        self.graph_level_y = not torch.equal(slices["y"], slices["x"])
        store = {"x": data.x, "lap_pe": data.lap_pe, "y": data.y,
                 "edge_index": data.edge_index.to(torch.int32),
                 "node_start": slices["x"][:-1], "node_count": slices["x"].diff(),
                 "edge_start": slices["edge_index"][:-1],
                 "edge_count": slices["edge_index"].diff()}
        if "edge_attr" in data:
            store["edge_attr"] = data.edge_attr
        self.store = store
        # batch sizes are known on the host, so no gather has to ask the GPU for one
        self.host_counts = {"node": store["node_count"].clone(),
                            "edge": store["edge_count"].clone()}
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(2**62, (1,))))
        self.rank, self.world = 0, 1
        self.pad_nodes = pad_nodes
        if pad_nodes is not None:
            largest = int(store["node_count"].max()) if self.num_graphs else 0
            if self.graph_level_y or "edge_attr" in store:
                raise ValueError("pad_nodes needs node-level targets and no edge features (the "
                                 "SBM tasks); leave task.pad_nodes unset for this dataset")
            if pad_nodes < largest:
                raise ValueError(f"pad_nodes={pad_nodes} is below the largest graph's "
                                 f"{largest} nodes; use task.pad_nodes=auto")

    @property
    def sharded(self) -> bool:
        """Whether each batch is this rank's slice of the global one (:meth:`shard`)."""
        return self.world > 1

    def shard(self, rank: int, world: int) -> None:
        """Yield only rank ``rank``'s contiguous slice (of ``world``) of every global batch, as
        data parallelism needs; every rank draws the same order from the same generator."""
        self.rank, self.world = rank, world

    def to(self, device: torch.device | str) -> GraphLoader:
        """Hold the graphs on ``device``; batches are built there."""
        self.store = {k: v.to(device) for k, v in self.store.items()}
        return self

    def __len__(self) -> int:
        return -(-self.num_graphs // self.batch_size)

    def __iter__(self) -> Iterator[GraphBatch]:
        order = (torch.randperm(self.num_graphs, generator=self.generator) if self.shuffle
                 else torch.arange(self.num_graphs))
        device = self.store["x"].device
        on_device = order.pin_memory() if device.type == "cuda" else order
        on_device = on_device.to(device, non_blocking=True)
        for start in range(0, self.num_graphs, self.batch_size):
            stop = min(start + self.batch_size, self.num_graphs)
            per = -(-(stop - start) // self.world)
            first = start + self.rank * per
            last = min(first + per, stop)
            yield self.gather(on_device[first:last], order[first:last])

    def gather(self, ids: torch.Tensor, host_ids: torch.Tensor) -> GraphBatch:
        """The batch of graphs ``ids`` (on the store's device; ``host_ids`` the same on the
        host, to size the outputs without a device sync)."""
        s = self.store
        num_graphs = len(host_ids)
        graph = torch.arange(num_graphs, device=ids.device)
        node_count, edge_count = s["node_count"][ids], s["edge_count"][ids]
        host_nodes = self.host_counts["node"][host_ids]
        n = int(host_nodes.sum())
        e = int(self.host_counts["edge"][host_ids].sum())
        node_graph = torch.repeat_interleave(graph, node_count, output_size=n)
        edge_graph = torch.repeat_interleave(graph, edge_count, output_size=e)
        node_offset = node_count.cumsum(0) - node_count      # first node of each graph in batch
        edge_offset = edge_count.cumsum(0) - edge_count
        slot = torch.arange(n, device=ids.device) - node_offset[node_graph]
        nodes = slot + s["node_start"][ids][node_graph]
        edges = torch.arange(e, device=ids.device) + (s["edge_start"][ids] - edge_offset)[
            edge_graph]
        edge_index = s["edge_index"][:, edges].long() + node_offset[edge_graph]
        if self.pad_nodes is not None:
            return self._padded(s["x"][nodes], s["lap_pe"][nodes], s["y"][nodes], node_graph,
                                slot, edge_index, num_graphs)
        return GraphBatch(
            x=s["x"][nodes], edge_index=edge_index, lap_pe=s["lap_pe"][nodes],
            y=s["y"][ids] if self.graph_level_y else s["y"][nodes], batch=node_graph, slot=slot,
            edge_attr=s["edge_attr"][edges] if "edge_attr" in s else None,
            num_graphs=num_graphs, max_nodes=int(host_nodes.max()) if num_graphs else 0)

    def _padded(self, x: torch.Tensor, lap_pe: torch.Tensor, y: torch.Tensor,
                node_graph: torch.Tensor, slot: torch.Tensor, edge_index: torch.Tensor,
                num_graphs: int) -> GraphBatch:
        """The batch's nodes placed in the padded layout of :class:`GraphBatch` (a sharded
        loader's batches: this rank's share of ``batch_size`` graphs)."""
        g, m = -(-self.batch_size // self.world), self.pad_nodes
        row = node_graph * m + slot
        rows = torch.arange(g * m, device=x.device)

        def placed(values: torch.Tensor) -> torch.Tensor:
            out = values.new_zeros(g * m, *values.shape[1:])
            return out.index_copy_(0, row, values)

        return GraphBatch(
            x=placed(x), edge_index=edge_index.new_zeros(2, 0), lap_pe=placed(lap_pe),
            y=placed(y), batch=rows // m, slot=rows % m, edge_attr=None, num_graphs=num_graphs,
            max_nodes=m, node_mask=placed(torch.ones_like(slot, dtype=lap_pe.dtype)),
            adjacency=adjacency(node_graph, slot, edge_index, g, m, lap_pe.dtype))
