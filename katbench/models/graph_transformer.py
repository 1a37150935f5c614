r"""Graph Transformer of Dwivedi & Bresson (2020), sparse attention over graph edges, with the
feed-forward blocks injected (``mlp_layer``, timm style) so only the channel mixer changes.

One layer, per head :math:`k` of width :math:`d_k` (``GraphTransformerLayer``):

.. math::
    s_{ij}^k = \frac{(K^k h_j) \odot (Q^k h_i)}{\sqrt{d_k}} \odot E^k e_{ij}, \qquad
    w_{ij}^k = \exp\bigl(\mathrm{clamp}(\textstyle\sum s_{ij}^k, -5, 5)\bigr), \qquad
    \hat h_i^k = \frac{\sum_{j \in \mathcal N(i)} w_{ij}^k V^k h_j}{\sum_j w_{ij}^k + 10^{-6}},

(the :math:`\odot E^k e_{ij}` factor only with edge features), then
:math:`h \leftarrow \mathrm{BN}(h + O_h \hat h)`, :math:`h \leftarrow \mathrm{BN}(h +
\mathrm{FFN}_h(h))`; with edge features the same for :math:`e_{ij} \leftarrow
\mathrm{BN}(e + O_e s_{ij})`, :math:`e \leftarrow \mathrm{BN}(e + \mathrm{FFN}_e(e))`.
Inputs: node (and edge) type embeddings plus a linear map of the Laplacian eigenvector PE,
whose signs are flipped at random per graph and dimension in training. Output: a 3-layer MLP
readout (d -> d/2 -> d/4 -> out) on the mean of node states (graph tasks) or on every node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch_geometric.nn import global_mean_pool

from katbench.data.graph import adjacency

# (in_features, hidden_features, out_features) -> module, e.g. a build_mixer partial.
MlpLayer = Callable[[int, int, int], nn.Module]


class DenseGraph(NamedTuple):
    """A batch's graphs padded to ``M`` nodes each: node ``i`` is row ``index[i]`` of the
    ``graphs * M`` padded rows, and ``mask[b, i, j]`` is 1 where graph ``b`` has the edge from
    its node ``j`` to its node ``i`` (``(graphs, M, M)``, the features' dtype). For a padded
    batch the node states already are those rows: ``index`` is None and ``node_mask``
    (``(graphs * M,)``) marks the real ones."""

    index: torch.Tensor | None
    mask: torch.Tensor
    node_mask: torch.Tensor | None = None


def dense_graph(batch: Any, dtype: torch.dtype) -> DenseGraph:
    """:class:`DenseGraph` of a :class:`~katbench.data.graph.GraphBatch` (its ``slot`` and
    ``max_nodes`` say where each node goes; an edge given twice counts once)."""
    if batch.padded:
        return DenseGraph(None, batch.adjacency.to(dtype), batch.node_mask.to(dtype))
    m = batch.max_nodes
    mask = adjacency(batch.batch, batch.slot, batch.edge_index, batch.num_graphs, m, dtype)
    return DenseGraph(batch.batch * m + batch.slot, mask)


def masked_batch_norm(norm: nn.BatchNorm1d, h: torch.Tensor,
                      node_mask: torch.Tensor | None) -> torch.Tensor:
    """``norm(h)`` over the real rows only (``node_mask`` 1) of padded node states: in training
    the statistics and the running-statistics update of ``nn.BatchNorm1d`` on those rows alone
    (the padding rows are normalised with them and left out of everything else); in eval,
    and without a mask, ``norm(h)`` itself."""
    if node_mask is None or not norm.training:
        return norm(h)
    weight = node_mask.unsqueeze(-1)
    count = node_mask.sum()
    mean = (h * weight).sum(0) / count
    var = ((h - mean).square() * weight).sum(0) / count
    with torch.no_grad():
        norm.running_mean.lerp_(mean, norm.momentum)
        norm.running_var.lerp_(var * count / (count - 1), norm.momentum)
        norm.num_batches_tracked.add_(1)
    return (h - mean) * torch.rsqrt(var + norm.eps) * norm.weight + norm.bias


def flex_graph_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """The layer's attention with FlexAttention: softmax over each node's neighbours (``mask``,
    ``(graphs, M, M)``) of the clamped scores, ``(graphs, heads, M, d_k)`` in and out; rows
    without neighbours (padding) get 0, as in the dense form. Head widths are zero-padded to a
    power of two >= 16 for its kernels (zero columns change no score and are dropped)."""
    from torch.nn.attention.flex_attention import flex_attention

    d_k = q.shape[-1]
    width = max(16, 1 << (d_k - 1).bit_length())

    def clamped_neighbours(score, graph, head, receiver, sender):
        return torch.where(mask[graph, receiver, sender] > 0, score.clamp(-5, 5),
                           -float("inf"))

    q, k, v = (nn.functional.pad(t, (0, width - d_k)) for t in (q, k, v))
    out = flex_attention(q, k, v, score_mod=clamped_neighbours, scale=1 / math.sqrt(d_k))
    return out[..., :d_k]


PE_SIGN_FLIPS = ("batch", "graph")


class GraphTransformerLayer(nn.Module):
    """Multi-head attention over the graph's edges + FFN, residuals and batch norm.

    With edge features the attention runs over the edge list (gathers and an atomic scatter
    per edge); without, over padded per-graph matrices (batched matmuls, several times faster
    on a GPU: PATTERN's graphs have ~50 edges per node). Both compute the formula above.
    """

    def __init__(self, dim: int, heads: int, mlp_layer: MlpLayer, ffn_hidden: int,
                 edge_features: bool, dropout: float = 0.0, flex: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads, self.dropout, self.flex = dim, heads, dropout, flex
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.o_h = nn.Linear(dim, dim)
        self.norm1_h, self.norm2_h = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        self.ffn_h = mlp_layer(dim, ffn_hidden, dim)
        self.edge_features = edge_features
        if edge_features:
            self.proj_e = nn.Linear(dim, dim, bias=False)
            self.o_e = nn.Linear(dim, dim)
            self.norm1_e, self.norm2_e = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
            self.ffn_e = mlp_layer(dim, ffn_hidden, dim)

    def reset_parameters(self) -> None:
        """Re-initialise every child that can (linears, norms, mixers)."""
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor | None = None,
                dense: DenseGraph | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One layer; ``dense`` (without edge features) computes the same attention as padded
        per-graph matrices (:class:`DenseGraph`), with no atomic scatter over the edges."""
        n, d_k = h.shape[0], self.dim // self.heads
        q, k, v = (f(h).view(n, self.heads, d_k) for f in (self.q, self.k, self.v))
        if dense is not None and not self.edge_features:
            score, attn = None, self._dense_attention(q, k, v, dense)
        else:
            score, attn = self._sparse_attention(q, k, v, edge_index, e)
        rows = dense.node_mask if dense is not None else None
        h = masked_batch_norm(self.norm1_h, h + self.o_h(
            nn.functional.dropout(attn, self.dropout, self.training)), rows)
        h = masked_batch_norm(self.norm2_h, h + self.ffn_h(h), rows)
        if self.edge_features:
            s = nn.functional.dropout(score.reshape(-1, self.dim), self.dropout, self.training)
            e = self.norm1_e(e + self.o_e(s))
            e = self.norm2_e(e + self.ffn_e(e))
        return h, e

    def _sparse_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          edge_index: torch.Tensor, e: torch.Tensor | None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-edge scores ``(E, heads, d_k)`` and the attended values ``(N, dim)``."""
        n, d_k = q.shape[0], q.shape[2]
        src, dst = edge_index
        score = k[src] * q[dst] / math.sqrt(d_k)
        if self.edge_features:
            score = score * self.proj_e(e).view(-1, self.heads, d_k)
        weight = score.sum(-1).clamp(-5, 5).exp()
        z = weight.new_zeros(n, self.heads).index_add_(0, dst, weight)
        attn = v.new_zeros(n, self.heads, d_k).index_add_(0, dst, v[src] * weight.unsqueeze(-1))
        return score, (attn / (z.unsqueeze(-1) + 1e-6)).reshape(n, self.dim)

    def _dense_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         dense: DenseGraph) -> torch.Tensor:
        """The attended values ``(N, dim)`` from padded ``(graphs, heads, M, M)`` weights."""
        d_k = q.shape[2]
        graphs, m = dense.mask.shape[0], dense.mask.shape[1]

        def padded(t: torch.Tensor) -> torch.Tensor:           # (graphs, heads, M, d_k)
            rows = t if dense.index is None else \
                t.new_zeros(graphs * m, self.heads, d_k).index_copy(0, dense.index, t)
            return rows.view(graphs, m, self.heads, d_k).transpose(1, 2)

        qp, kp, vp = padded(q), padded(k), padded(v)
        if self.flex:
            attn = flex_graph_attention(qp, kp, vp, dense.mask)
        else:
            scores = qp @ kp.transpose(-1, -2) / math.sqrt(d_k)    # [b, h, receiver, sender]
            weight = scores.clamp(-5, 5).exp() * dense.mask.unsqueeze(1)
            attn = (weight @ vp) / (weight.sum(-1, keepdim=True) + 1e-6)
        rows = attn.transpose(1, 2).reshape(graphs * m, self.dim)
        return rows if dense.index is None else rows[dense.index]


class GraphTransformer(nn.Module):
    """Embeddings + Laplacian PE -> ``layers`` x :class:`GraphTransformerLayer` -> MLP readout.

    ``forward(batch)`` takes a :class:`~katbench.data.graph.GraphBatch` with ``x`` (``(N, 1)``
    node types), ``edge_index``, ``lap_pe`` (``(N, pe_dim)``), ``batch``, ``slot``,
    ``max_nodes``, ``num_graphs`` and, when ``num_edge_types`` is set, ``edge_attr``
    (``(E,)`` bond types); it never waits for the device. It returns ``(num_graphs,)`` for
    ``out_features == 1`` graph tasks, ``(num_graphs, out)`` for other graph tasks and
    ``(N, out)`` when ``node_level``. ``flex_attention`` computes the padded attention of graphs
    without edge features with :func:`flex_graph_attention` (for compiled models: eager, its
    reference implementation is slower than the plain one). In training the eigenvectors'
    signs are flipped at random, per dimension: the same signs for the whole batch
    (``pe_sign_flip="batch"``, the original's) or independent ones per graph (``"graph"``).
    """

    def __init__(self, num_node_types: int, out_features: int, mlp_layer: MlpLayer, *,
                 dim: int = 64, layers: int = 10, heads: int = 8, pe_dim: int = 8,
                 ffn_hidden: int | None = None, num_edge_types: int | None = None,
                 node_level: bool = False, dropout: float = 0.0,
                 in_feat_dropout: float = 0.0, flex_attention: bool = False,
                 pe_sign_flip: str = "batch") -> None:
        super().__init__()
        if pe_sign_flip not in PE_SIGN_FLIPS:
            raise ValueError(f"pe_sign_flip={pe_sign_flip!r}; use one of {PE_SIGN_FLIPS}")
        self.pe_sign_flip = pe_sign_flip
        self.node_level, self.out_features = node_level, out_features
        self.embed_h = nn.Embedding(num_node_types, dim)
        self.embed_pe = nn.Linear(pe_dim, dim)
        self.embed_e = nn.Embedding(num_edge_types, dim) if num_edge_types else None
        self.in_feat_dropout = nn.Dropout(in_feat_dropout)
        self.ffn_hidden = ffn_hidden or 2 * dim
        self.layers = nn.ModuleList(
            GraphTransformerLayer(dim, heads, mlp_layer, self.ffn_hidden,
                                  num_edge_types is not None, dropout, flex_attention)
            for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(),
                                     nn.Linear(dim // 2, dim // 4), nn.ReLU(),
                                     nn.Linear(dim // 4, out_features))

    def forward(self, batch: Any) -> torch.Tensor:
        pe = batch.lap_pe
        graphs = batch.adjacency.shape[0] if batch.padded else batch.num_graphs
        if self.training:  # eigenvectors are defined up to sign: learn invariance to it
            per_graph = self.pe_sign_flip == "graph"
            flips = torch.randint(0, 2, (graphs if per_graph else 1, pe.shape[1]),
                                  device=pe.device)
            signs = (2 * flips - 1).to(pe.dtype)
            pe = pe * (signs[batch.batch] if per_graph else signs)
        h = self.in_feat_dropout(self.embed_h(batch.x[:, 0]) + self.embed_pe(pe))
        e = self.embed_e(batch.edge_attr) if self.embed_e is not None else None
        dense = dense_graph(batch, h.dtype) if e is None else None
        for layer in self.layers:
            h, e = layer(h, batch.edge_index, e, dense)
        if self.node_level:
            return self.readout(h)
        out = self.readout(global_mean_pool(h, batch.batch, batch.num_graphs))
        return out.squeeze(-1) if self.out_features == 1 else out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
