"""Graph data: SBM generator statistics, Laplacian PE, SMILES -> ZINC graphs, cached datasets,
the device-side graph loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from katbench.data import graph
from katbench.data.graph import (
    CLUSTER,
    PATTERN,
    ZINC_ATOMS,
    ZINC_BONDS,
    GraphLoader,
    MicroZINC,
    SBMDataset,
    generate_sbm,
    laplacian_pe,
    smiles_to_graph,
)


def _density(graphs, pair_mask):
    """Observed edge density over the node pairs ``i < j`` where ``pair_mask(g)[i, j]``."""
    hits = pairs = 0
    for g in graphs:
        n = g.num_nodes
        adj = np.zeros((n, n), dtype=bool)
        adj[g.edge_index[0].numpy(), g.edge_index[1].numpy()] = True
        mask = np.triu(pair_mask(g), 1)
        hits, pairs = hits + adj[mask].sum(), pairs + mask.sum()
    return hits / pairs


def test_cluster_generator_matches_its_parameters():
    graphs = generate_sbm("cluster", {**CLUSTER, "n_train": 60, "n_val": 1, "n_test": 1},
                          seed=0, pe_dim=4)["train"]
    sizes = np.array([g.num_nodes for g in graphs])
    assert sizes.min() >= 6 * 5 and sizes.max() <= 6 * 34
    assert abs(sizes.mean() - 6 * 19.5) < 8                     # blocks uniform in [5, 35)
    p = _density(graphs, lambda g: (g.y[:, None] == g.y[None, :]).numpy())
    q = _density(graphs, lambda g: (g.y[:, None] != g.y[None, :]).numpy())
    assert abs(p - 0.55) < 0.02 and abs(q - 0.25) < 0.01
    labels = torch.cat([g.y for g in graphs])
    assert abs(torch.bincount(labels).float() / len(labels) - 1 / 6).max() < 0.03
    for g in graphs[:10]:                                       # one seed node per community
        seeds = g.x[:, 0][g.x[:, 0] > 0]
        assert sorted(seeds.tolist()) == list(range(1, 7))
        assert torch.equal(g.y[g.x[:, 0] > 0], seeds - 1)
    assert graphs[0].lap_pe.shape == (graphs[0].num_nodes, 4)


def test_pattern_generator_matches_its_parameters():
    params = {**PATTERN, "n_patterns": 6, "train_per_pattern": 10, "eval_per_pattern": 2}
    data = generate_sbm("pattern", params, seed=1, pe_dim=2)
    assert [len(data[s]) for s in ("train", "val", "test")] == [60, 12, 12]
    graphs = data["train"]
    labels = torch.cat([g.y for g in graphs]).float()
    assert 0.1 < labels.mean() < 0.25                           # pattern ~19.5 of ~117 nodes
    assert set(torch.cat([g.x[:, 0] for g in graphs]).tolist()) == {0, 1, 2}
    inside = _density(graphs, lambda g: (g.y[:, None] & g.y[None, :]).bool().numpy())
    link = _density(graphs, lambda g: (g.y[:, None] != g.y[None, :]).numpy())
    rest = _density(graphs, lambda g: ((1 - g.y)[:, None] & (1 - g.y)[None, :]).bool().numpy())
    assert abs(inside - 0.5) < 0.04 and abs(link - 0.5) < 0.02
    # SBM part: p = 0.5 within / q = 0.35 across communities, ~22% of its pairs within -> ~0.383
    assert abs(rest - 0.383) < 0.02
    mean_edges = np.mean([g.edge_index.shape[1] for g in graphs])
    assert 5000 < mean_edges < 7200                             # released data: ~6.1k


def test_generator_is_seeded():
    a = generate_sbm("cluster", {**CLUSTER, "n_train": 2, "n_val": 1, "n_test": 1}, 3, 2)
    b = generate_sbm("cluster", {**CLUSTER, "n_train": 2, "n_val": 1, "n_test": 1}, 3, 2)
    assert torch.equal(a["train"][1].edge_index, b["train"][1].edge_index)
    with pytest.raises(ValueError, match="unknown SBM dataset"):
        generate_sbm("sbm", CLUSTER, 0, 2)


def test_worker_processes_give_the_same_graphs_bit_for_bit(monkeypatch):
    params = {**CLUSTER, "n_train": 12, "n_val": 3, "n_test": 3}
    alone = generate_sbm("cluster", params, seed=5, pe_dim=4)
    monkeypatch.setattr(graph, "PE_GRAPHS_PER_WORKER", 6)        # 18 graphs: 2 or 3 workers
    monkeypatch.setattr(graph, "_usable_cores", lambda: 3)
    forked = generate_sbm("cluster", params, seed=5, pe_dim=4)
    for split in ("train", "val", "test"):
        assert len(forked[split]) == len(alone[split])
        for a, b in zip(alone[split], forked[split], strict=True):
            for key in ("x", "y", "edge_index", "lap_pe"):
                assert torch.equal(a[key], b[key]), (split, key)


def test_laplacian_pe_shapes_and_eigen_equation():
    ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    ring = torch.cat([ring, ring.flip(0)], 1)
    pe = laplacian_pe(ring, 6, 3)
    assert pe.shape == (6, 3)
    lap = torch.eye(6) - 0.5 * torch.zeros(6, 6).index_put_(tuple(ring), torch.ones(12))
    ratio = (lap @ pe) / pe.clamp(min=1e-9).where(pe.abs() > 1e-6, torch.ones(()))
    assert torch.allclose((lap @ pe).norm(dim=0), (1 - torch.cos(torch.tensor(
        [np.pi / 3] * 2 + [2 * np.pi / 3]))) * pe.norm(dim=0), atol=1e-5), ratio
    assert torch.allclose(pe.T @ pe, torch.eye(3), atol=1e-5)
    small = laplacian_pe(torch.tensor([[0, 1], [1, 0]]), 2, 4)   # 2 nodes: 1 vector + padding
    assert small.shape == (2, 4) and torch.all(small[:, 1:] == 0)


def test_smiles_to_graph_uses_the_zinc_vocabulary():
    g = smiles_to_graph("C[NH3+].[Cl-]", 1.5, pe_dim=2)          # salt: largest fragment kept
    assert [ZINC_ATOMS[i] for i in g.x[:, 0]] == ["C", "N H3 +"]
    assert g.edge_attr.tolist() == [ZINC_BONDS.index("SINGLE")] * 2 and g.y.item() == 1.5
    arom = smiles_to_graph("c1cc[nH]c1", 0.0, pe_dim=2)         # kekulised, [nH] -> 'N'
    assert {ZINC_BONDS[b] for b in arom.edge_attr} == {"SINGLE", "DOUBLE"}
    assert ZINC_ATOMS[arom.x[3, 0]] == "N"
    chiral = smiles_to_graph("C[C@H](O)CC", 0.0, pe_dim=2)
    assert ZINC_ATOMS[chiral.x[1, 0]] == "C H1"
    with pytest.raises(ValueError, match="not in the ZINC vocabulary"):
        smiles_to_graph("[Na+].[Na+]C", 0.0, pe_dim=2)


def test_micro_zinc_splits_and_cache(tmp_path):
    train = MicroZINC("train", pe_dim=3, root=tmp_path)
    val, test = MicroZINC("val", 3, tmp_path), MicroZINC("test", 3, tmp_path)
    assert (len(train), len(val), len(test)) == (802, 100, 100)
    assert train[0].lap_pe.shape[1] == 3 and train.x.max() < len(ZINC_ATOMS)
    assert min(g.num_nodes for g in test) >= 9 and max(g.num_nodes for g in test) <= 37


def test_corrupt_sbm_cache_is_rebuilt(tmp_path):
    params = {**CLUSTER, "n_train": 3, "n_val": 2, "n_test": 2}
    first = SBMDataset("cluster", "val", params, 0, 2, root=tmp_path)
    path = first.processed_paths[1]
    with open(path, "r+b") as f:                                  # flip bytes in the file
        f.seek(100)
        f.write(b"\x00garbage\x00")
    with pytest.warns(UserWarning, match="does not match its checksum"):
        again = SBMDataset("cluster", "val", params, 0, 2, root=tmp_path)
    assert len(again) == 2 and torch.equal(again[0].edge_index, first[0].edge_index)
    other = SBMDataset("cluster", "val", {**params, "q": 0.3}, 0, 2, root=tmp_path)
    assert other.processed_paths[1] != path                      # new parameters, new file


def _graphs(count: int, graph_level: bool) -> list:
    """Small random graphs of 3..8 nodes; per-graph ``y`` and bond types when ``graph_level``."""
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(1)
    out = []
    for k in range(count):
        n = 3 + k % 6
        ei = torch.randint(0, n, (2, 2 * n), generator=gen)
        extra = {"edge_attr": torch.randint(0, 4, (2 * n,), generator=gen),
                 "y": torch.randn(1, generator=gen)} if graph_level else {
                     "y": torch.randint(0, 2, (n,), generator=gen)}
        out.append(Data(x=torch.randint(0, 3, (n, 1), generator=gen), edge_index=ei,
                        lap_pe=torch.randn(n, 2, generator=gen), num_nodes=n, **extra))
    return out


@pytest.mark.parametrize("graph_level", [False, True])
def test_graph_loader_batches_equal_pyg_batches(graph_level):
    from torch_geometric.data import Batch

    graphs = _graphs(11, graph_level)
    loader = GraphLoader(graphs, batch_size=4, shuffle=True)
    assert len(loader) == 3 and [b.num_graphs for b in loader] == [4, 4, 3]
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    batch = loader.gather(order[:5], order[:5])
    ref = Batch.from_data_list([graphs[i] for i in order[:5].tolist()])
    for field in ("x", "edge_index", "lap_pe", "y", "batch") + (("edge_attr",) if graph_level
                                                                 else ()):
        assert torch.equal(getattr(batch, field), getattr(ref, field)), field
    assert batch.num_graphs == 5 and (batch.edge_attr is None) == (not graph_level)


def test_graph_loader_shuffles_every_graph_once_and_replays_from_its_generator():
    graphs = _graphs(10, graph_level=True)
    loader = GraphLoader(graphs, batch_size=3, shuffle=True)
    ys = {float(g.y): i for i, g in enumerate(graphs)}

    def epoch():
        return [ys[float(y)] for b in loader for y in b.y]

    state = loader.generator.get_state()
    first, second = epoch(), epoch()
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    loader.generator.set_state(state)                 # what the trainer's resume does
    assert epoch() == first
    assert [ys[float(y)] for b in GraphLoader(graphs, 3) for y in b.y] == list(range(10))


def test_sharded_graph_loader_yields_each_ranks_slice():
    graphs = _graphs(9, graph_level=False)
    torch.manual_seed(3)
    whole = list(GraphLoader(graphs, batch_size=5, shuffle=True))
    parts = []
    for rank in (0, 1):
        torch.manual_seed(3)                          # every rank seeds the same
        loader = GraphLoader(graphs, batch_size=5, shuffle=True)
        loader.shard(rank, 2)
        assert loader.sharded
        parts.append(list(loader))
    for full, a, b in zip(whole, *parts, strict=True):
        assert a.num_graphs + b.num_graphs == full.num_graphs
        assert torch.equal(torch.cat([a.x, b.x]), full.x)
        assert torch.equal(torch.cat([a.y, b.y]), full.y)


def test_graph_loader_rejects_an_empty_batch_size():
    with pytest.raises(ValueError, match="batch_size=0; use a positive number of graphs"):
        GraphLoader(_graphs(2, graph_level=False), 0)


def test_padded_graph_loader_places_every_node_and_edge_in_fixed_shapes():
    graphs = _graphs(11, graph_level=False)
    loader = GraphLoader(graphs, batch_size=4, shuffle=True, pad_nodes=9)
    plain = GraphLoader(graphs, batch_size=4, shuffle=True)
    plain.generator.set_state(loader.generator.get_state())
    for padded, batch in zip(loader, plain, strict=True):
        assert padded.padded and not batch.padded
        assert padded.x.shape == (36, 1) and padded.adjacency.shape == (4, 9, 9)
        assert padded.num_graphs == batch.num_graphs and padded.max_nodes == 9
        rows = batch.batch * 9 + batch.slot
        for field in ("x", "lap_pe", "y"):
            assert torch.equal(getattr(padded, field)[rows], getattr(batch, field)), field
        assert padded.node_mask.sum() == batch.num_nodes and padded.node_mask[rows].all()
        expected = torch.zeros(4, 9, 9)
        src, dst = batch.edge_index
        expected[batch.batch[dst], batch.slot[dst], batch.slot[src]] = 1.0
        assert torch.equal(padded.adjacency, expected)
    assert [b.num_graphs for b in loader] == [4, 4, 3]      # the last batch: one empty graph


def test_padded_graph_loader_names_what_it_cannot_pad():
    with pytest.raises(ValueError, match="pad_nodes=5 is below the largest graph's 8 nodes"):
        GraphLoader(_graphs(6, graph_level=False), 2, pad_nodes=5)
    with pytest.raises(ValueError, match="pad_nodes needs node-level targets"):
        GraphLoader(_graphs(6, graph_level=True), 2, pad_nodes=9)


def test_sharded_padded_batches_hold_each_ranks_share():
    loader = GraphLoader(_graphs(9, graph_level=False), batch_size=5, shuffle=True, pad_nodes=8)
    loader.shard(1, 2)
    assert [b.adjacency.shape[0] for b in loader] == [3, 3]     # ceil(5 / 2) graphs per rank
