r"""TabTransformer (Huang et al., 2020) whose feed-forward blocks come from ``build_mixer``.

For a row with categorical codes :math:`x_{cat} \in \mathbb N^m` and continuous features
:math:`x_{cont} \in \mathbb R^c`:

.. math::
    E = [e_1(x_1), \dots, e_m(x_m)] \in \mathbb R^{m \times d},\quad
    H = f_N \circ \dots \circ f_1(E),\quad
    \text{logit} = g([\operatorname{vec}(H), \operatorname{LN}(x_{cont})]),

where the column embedding :math:`e_i(j) = [c_i, w_{ij}]` concatenates a per-column identifier
:math:`c_i \in \mathbb R^{d/8}` shared by all values of column ``i`` with a value embedding
:math:`w_{ij} \in \mathbb R^{7d/8}` (code 0, the missing value, has its own), each
:math:`f_k` is a post-norm transformer layer (``LN(x + MHA(x))``, then ``LN(x + FF(x))``) whose
``FF`` is ``build_mixer(mixer, d, 4d, d)``, and ``g`` is the head MLP with hidden widths
``4l, 2l`` for its input width :math:`l = md + c` (ReLU). With ``head_mixer=True`` the head's
``l -> 4l -> 2l`` part is also a mixer: ``build_mixer(mixer, l, 4l, 2l)``, ReLU,
``Linear(2l, outputs)`` (one logit or value; one logit per class for ``outputs > 1``).
With no categorical columns the transformer is empty and the model is the head on ``LN(x_cont)``.
``LN`` normalises each row across its continuous features (``cont_norm="layer"``, the paper's
Figure 1; with one continuous feature it is skipped). It discards each row's mean and spread over
its ``c`` features, two of ``c`` degrees of freedom, which hurts tables whose signal sits in
continuous columns (docs/tabular.md); ``cont_norm="none"`` feeds the
features as the data module scaled them (per column, training statistics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from katbench.mixers import build_mixer

__all__ = ["ColumnEmbedding", "TabTransformer", "TransformerLayer", "count_parameters"]


class ColumnEmbedding(nn.Module):
    """Per-column value embeddings of width ``dim - shared_dim`` plus a shared column id."""

    def __init__(self, cardinalities: list[int], dim: int, shared_dim: int) -> None:
        super().__init__()
        if not 0 <= shared_dim < dim:
            raise ValueError(f"shared_dim={shared_dim} must be in [0, dim={dim})")
        offsets = torch.tensor([0, *cardinalities[:-1]]).cumsum(0) if cardinalities else \
            torch.zeros(0, dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.values = nn.Embedding(max(sum(cardinalities), 1), dim - shared_dim)
        self.columns = nn.Parameter(torch.empty(len(cardinalities), shared_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Unit-normal value embeddings and column ids, as ``nn.Embedding`` does."""
        nn.init.normal_(self.values.weight)
        nn.init.normal_(self.columns)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``(batch, m)`` codes -> ``(batch, m, dim)`` embeddings."""
        values = self.values(codes + self.offsets)
        shared = self.columns.expand(codes.shape[0], -1, -1)
        return torch.cat([shared, values], -1)


class TransformerLayer(nn.Module):
    """Post-norm transformer layer (Vaswani et al.) with a mixer as its feed-forward block."""

    def __init__(self, dim: int, heads: int, mixer: str, mixer_kwargs: dict[str, Any],
                 attn_dropout: float, ff_dropout: float, ff_hidden: int | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = build_mixer(mixer, dim, ff_hidden or 4 * dim, dim, drop=ff_dropout,
                              **mixer_kwargs)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.ff(x))


class TabTransformer(nn.Module):
    """``forward(x_cat, x_cont) -> (batch,)`` logits, or ``(batch, outputs)`` for
    ``outputs > 1``; defaults are TabTransformer's.

    ``mixer`` / ``mixer_kwargs`` build the transformer's feed-forward blocks; ``head_mixer``
    makes the head's first two layers a mixer too, built with ``head_mixer_kwargs`` (default:
    ``mixer_kwargs``; the head's widths differ, so e.g. grkan's ``num_groups`` may need its own
    value there). ``ff_hidden`` (default ``4 dim``) and ``head_hidden`` (default
    ``head_mults[0] l``) replace the mixers' hidden widths (equal parameter budgets).
    """

    def __init__(self, cardinalities: list[int], n_continuous: int, mixer: str = "mlp",
                 mixer_kwargs: dict[str, Any] | None = None, dim: int = 32, depth: int = 6,
                 heads: int = 8, attn_dropout: float = 0.1, ff_dropout: float = 0.1,
                 head_mults: tuple[int, int] = (4, 2), head_mixer: bool = False,
                 head_mixer_kwargs: dict[str, Any] | None = None,
                 cont_norm: str = "layer", outputs: int = 1, ff_hidden: int | None = None,
                 head_hidden: int | None = None) -> None:
        super().__init__()
        if not cardinalities and n_continuous == 0:
            raise ValueError("TabTransformer needs at least one categorical or continuous feature")
        mixer_kwargs = dict(mixer_kwargs or {})
        self.embed = ColumnEmbedding(list(cardinalities), dim, dim // 8)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, mixer, mixer_kwargs, attn_dropout, ff_dropout,
                             ff_hidden)
            for _ in range(depth if cardinalities else 0))
        if cont_norm not in ("layer", "none"):
            raise ValueError(f"cont_norm={cont_norm!r}; choose 'layer' or 'none'")
        # LayerNorm of a single value is a constant: it would erase a lone continuous feature.
        self.cont_norm = nn.LayerNorm(n_continuous) if cont_norm == "layer" and n_continuous > 1 \
            else nn.Identity()
        width = len(cardinalities) * dim + n_continuous
        h1, h2 = head_hidden or head_mults[0] * width, head_mults[1] * width
        if head_mixer:
            kwargs = mixer_kwargs if head_mixer_kwargs is None else dict(head_mixer_kwargs)
            hidden: nn.Module = build_mixer(mixer, width, h1, h2, **kwargs)
        else:
            hidden = nn.Sequential(nn.Linear(width, h1), nn.ReLU(), nn.Linear(h1, h2))
        self.head = nn.Sequential(hidden, nn.ReLU(), nn.Linear(h2, outputs))
        self.input_width = width

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.layers:
            h = self.embed(x_cat)
            for layer in self.layers:
                h = layer(h)
            parts.append(h.flatten(1))
        if x_cont.shape[1]:
            parts.append(self.cont_norm(x_cont))
        out = self.head(torch.cat(parts, 1))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters: total, transformer feed-forward blocks, head, the rest."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ff = sum(p.numel() for layer in getattr(model, "layers", []) for p in layer.ff.parameters())
    head = sum(p.numel() for p in model.head.parameters()) if hasattr(model, "head") else 0
    return {"total": total, "ff": ff, "head": head, "other": total - ff - head}
