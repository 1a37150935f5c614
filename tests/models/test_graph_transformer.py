"""Graph Transformer: parameter budget per mixer, attention math (edge list and padded),
PE sign flips, grads."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf
from torch_geometric.data import Data

from katbench.data.graph import GraphBatch, GraphLoader
from katbench.mixers import MIXERS, build_mixer
from katbench.models.budget import hidden_for_budget
from katbench.models.graph_transformer import (
    GraphTransformer,
    GraphTransformerLayer,
    count_parameters,
    dense_graph,
)
from katbench.run import tasks_dir

MIXER_KW = {"mlp": {"act_layer": "relu"}, "kan": {}, "grkan": {"act_init": "relu"}}


def _mixer(name):
    return lambda i, h, o: build_mixer(name, i, h, o, **MIXER_KW[name])


def _batch(edges: bool, n_graphs: int = 3, pe_dim: int = 4) -> GraphBatch:
    batch = next(iter(GraphLoader(_ring_graphs(n_graphs, pe_dim), n_graphs)))
    return batch if edges else dataclasses.replace(batch, edge_attr=None)


def _ring_graphs(n_graphs: int, pe_dim: int = 4) -> list[Data]:
    """Rings of 5, 6, ... nodes with random node types, bond types, PE and node labels."""
    gen = torch.Generator().manual_seed(0)
    graphs = []
    for k in range(n_graphs):
        n = 5 + k
        src = torch.arange(n)
        ring = torch.stack([src, (src + 1) % n])
        ei = torch.cat([ring, ring.flip(0)], 1)
        graphs.append(Data(x=torch.randint(0, 3, (n, 1), generator=gen), edge_index=ei,
                           edge_attr=torch.randint(0, 4, (ei.shape[1],), generator=gen),
                           lap_pe=torch.randn(n, pe_dim, generator=gen),
                           y=torch.randint(0, 2, (n,), generator=gen), num_nodes=n))
    return graphs


# The widths the task files gave per mixer before the budget was solved (paper profile): the
# solver must find them again, so that the published runs' models are unchanged.
PUBLISHED_WIDTHS = {"zinc": {"mlp": 128, "kan": 13, "grkan": 128},
                    "pattern": {"mlp": 160, "kan": 16, "grkan": 160},
                    "cluster": {"mlp": 160, "kan": 16, "grkan": 160}}


@pytest.mark.parametrize("task, original", [("zinc", 588_929), ("pattern", 522_982),
                                            ("cluster", 524_026)])
def test_paper_config_parameters_near_the_original_for_every_mixer(task, original):
    """Each mixer's FFN width solved for the mlp's count lands within 1% of the original."""
    spec = OmegaConf.load(tasks_dir() / f"{task}.yaml")
    t = spec.task
    assert spec.param_budget == "mlp"
    types, outputs = {"zinc": (28, 1), "pattern": (3, 2), "cluster": (7, 6)}[task]

    def count(name, kwargs, hidden):
        return count_parameters(GraphTransformer(
            types, outputs, lambda i, h, o: build_mixer(name, i, h, o, **kwargs), dim=t.dim,
            layers=t.layers, heads=t.heads, pe_dim=t.pe_dim,
            ffn_hidden=t.ffn_hidden if hidden is None else hidden,
            num_edge_types=4 if task == "zinc" else None, node_level=task != "zinc"))

    assert count("mlp", {}, None) == original                   # the published count
    widths = {name: hidden_for_budget("mlp", name, dict(spec.mixers.get(name) or {}), count,
                                      t.ffn_hidden) for name in MIXERS}
    assert {k: widths[k] for k in PUBLISHED_WIDTHS[task]} == PUBLISHED_WIDTHS[task]
    for name, hidden in widths.items():
        assert abs(count(name, {}, hidden) / original - 1) < 0.01, (name, hidden)


@pytest.mark.parametrize(("padded", "flex"), [(False, False), (True, False), (True, True)])
@pytest.mark.filterwarnings("ignore:.*flex_attention called without torch.compile")
@torch.no_grad()   # FlexAttention has no CPU backward
def test_attention_matches_dense_softmax_over_neighbours(padded, flex):
    torch.manual_seed(0)
    layer = GraphTransformerLayer(8, 2, _mixer("mlp"), 16, edge_features=False,
                                  flex=flex).eval()
    batch = _batch(edges=False, n_graphs=1)
    h = torch.randn(batch.num_nodes, 8)
    q, k, v = (f(h).view(-1, 2, 4) for f in (layer.q, layer.k, layer.v))
    adj = torch.zeros(batch.num_nodes, batch.num_nodes, dtype=torch.bool)
    adj[batch.edge_index[1], batch.edge_index[0]] = True          # row = receiver
    logits = torch.einsum("ihd,jhd->hij", q, k) / 2.0
    attn = torch.softmax(logits.clamp(-5, 5).masked_fill(~adj, float("-inf")), -1)
    ref = torch.einsum("hij,jhd->ihd", attn, v).reshape(-1, 8)
    ref = layer.norm1_h(h + layer.o_h(ref))
    ref = layer.norm2_h(ref + layer.ffn_h(ref))
    out, e = layer(h, batch.edge_index, dense=dense_graph(batch, h.dtype) if padded else None)
    assert e is None and torch.allclose(out, ref, atol=1e-5)


def test_padded_attention_equals_edge_list_attention_on_a_batch():
    """Graphs of different sizes in one batch: padding rows and cross-graph pairs stay out."""
    torch.manual_seed(0)
    layer = GraphTransformerLayer(8, 2, _mixer("mlp"), 16, edge_features=False).train()
    batch = _batch(edges=False, n_graphs=4)
    h = torch.randn(batch.num_nodes, 8, requires_grad=True)
    sparse, _ = layer(h, batch.edge_index)
    (grad_sparse,) = torch.autograd.grad(sparse.square().sum(), h)
    padded, _ = layer(h, batch.edge_index, dense=dense_graph(batch, h.dtype))
    (grad_padded,) = torch.autograd.grad(padded.square().sum(), h)
    assert torch.allclose(sparse, padded, atol=1e-5)
    assert torch.allclose(grad_sparse, grad_padded, atol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "kan", "grkan"])
@pytest.mark.parametrize("edges", [True, False])
def test_forward_backward_every_mixer(name, edges):
    torch.manual_seed(0)
    model = GraphTransformer(3, 1 if edges else 2, _mixer(name), dim=16, layers=2, heads=2,
                             pe_dim=4, ffn_hidden=8, num_edge_types=4 if edges else None,
                             node_level=not edges)
    batch = _batch(edges)
    out = model(batch)
    assert out.shape == ((3,) if edges else (batch.num_nodes, 2))
    out.square().mean().backward()
    # the last layer's edge stream feeds nothing (as in the original, whose count includes it)
    unused = ("layers.1.o_e", "layers.1.norm1_e", "layers.1.norm2_e", "layers.1.ffn_e")
    grads = {n: p.grad for n, p in model.named_parameters() if not n.startswith(unused)}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None]
    assert all(p.grad.abs().sum() > 0 for p in model.layers[0].ffn_h.parameters()
               if p.dim() > 1)                                  # the mixer's weights learn


@pytest.mark.parametrize("per", ["batch", "graph"])
def test_pe_sign_flips_in_training_only(per):
    torch.manual_seed(0)
    model = GraphTransformer(3, 1, _mixer("mlp"), dim=16, layers=1, heads=2, pe_dim=4,
                             num_edge_types=4, pe_sign_flip=per)
    batch = _batch(edges=True)
    model.eval()
    a = model(batch)
    flipped = dataclasses.replace(batch, lap_pe=-batch.lap_pe)
    assert not torch.allclose(a, model(flipped))                  # the model sees the sign...
    assert torch.equal(a, model(batch))                           # ...and eval is deterministic
    model.train()
    seen, differ, emb = set(), False, []
    model.embed_pe.register_forward_hook(lambda m, i, o: emb.append(i[0]))
    for seed in range(6):                                         # training: random signs per
        torch.manual_seed(seed)                                   # dimension, batch or graph
        model(batch)
        signs = torch.sign(emb[-1] / batch.lap_pe)
        for g in range(3):                                        # one sign per graph and dim
            rows = signs[batch.batch == g]
            assert torch.all(rows == rows[0])
        differ |= not torch.all(signs == signs[0])                # graphs apart in one batch
        seen.add(tuple(signs[0].tolist()))
    assert len(seen) > 1 and differ == (per == "graph")


def test_unknown_pe_sign_flip_is_named():
    with pytest.raises(ValueError, match="pe_sign_flip='node'; use one of"):
        GraphTransformer(3, 1, _mixer("mlp"), dim=16, layers=1, heads=2, pe_sign_flip="node")


def _plain_and_padded(n_graphs: int = 4, pad: int = 11):
    """The same node-level graphs as a plain batch and as a padded one with an empty graph,
    and the padded rows of the plain batch's nodes."""
    graphs = _ring_graphs(n_graphs)
    for g in graphs:
        del g.edge_attr
    plain = next(iter(GraphLoader(graphs, n_graphs)))
    padded = next(iter(GraphLoader(graphs, n_graphs + 1, pad_nodes=pad)))
    return plain, padded, plain.batch * pad + plain.slot


@pytest.mark.parametrize("name", ["mlp", "grkan"])
def test_padded_batches_give_the_plain_model_outputs_gradients_and_statistics(name):
    """Train mode (batch norm over the real nodes only, its running statistics) and eval."""
    from katbench.tasks.graph import class_averaged_accuracy, weighted_cross_entropy

    plain, padded, rows = _plain_and_padded()
    torch.manual_seed(0)
    model = GraphTransformer(3, 2, _mixer(name), dim=16, layers=2, heads=2, pe_dim=4,
                             ffn_hidden=8, node_level=True)
    twin = GraphTransformer(3, 2, _mixer(name), dim=16, layers=2, heads=2, pe_dim=4,
                            ffn_hidden=8, node_level=True)
    twin.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    out = model(plain)
    torch.manual_seed(1)                    # the same PE sign flips: one row per graph
    padded_out = twin(padded)
    torch.testing.assert_close(padded_out[rows], out, rtol=1e-5, atol=1e-5)
    loss = weighted_cross_entropy(out, plain.y)
    padded_loss = weighted_cross_entropy(padded_out, padded.y, padded.node_mask)
    torch.testing.assert_close(padded_loss, loss)
    loss.backward()
    padded_loss.backward()
    for (key, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=key)
    for key, buffer in model.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[key], buffer, msg=key)
    model.eval()
    twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(padded)[rows], model(plain), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            class_averaged_accuracy(twin(padded), padded.y, padded.node_mask),
            class_averaged_accuracy(model(plain), plain.y))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.filterwarnings("ignore:.*flex_attention called without torch.compile")
@torch.no_grad()   # FlexAttention has no CPU backward: its gradients are checked on a GPU run
def test_flex_attention_gives_the_dense_model_outputs_on_padded_batches(train):
    """Padded batches with an empty graph (rows without neighbours: 0, not NaN)."""
    _, padded, rows = _plain_and_padded()
    torch.manual_seed(0)
    dense = GraphTransformer(3, 2, _mixer("grkan"), dim=16, layers=2, heads=2, pe_dim=4,
                             ffn_hidden=8, node_level=True).train(train)
    flex = GraphTransformer(3, 2, _mixer("grkan"), dim=16, layers=2, heads=2, pe_dim=4,
                            ffn_hidden=8, node_level=True, flex_attention=True).train(train)
    flex.load_state_dict(dense.state_dict())
    torch.manual_seed(1)
    expected = dense(padded)
    torch.manual_seed(1)
    out = flex(padded)
    assert not out.isnan().any()
    torch.testing.assert_close(out[rows], expected[rows], rtol=1e-4, atol=1e-5)


def test_flex_attention_is_refused_for_molecules_with_bond_features():
    from katbench.run import _normalise, compose
    from katbench.tasks import build_task

    cfg = compose(_normalise(["task=zinc", "mixer=mlp", "profile=quick",
                              "+task.flex_attention=true"]))
    with pytest.raises(ValueError, match=r"task.flex_attention=true: zinc's molecules have bond "
                                         r"features.*set it for PATTERN and CLUSTER only"):
        build_task(cfg)
