"""TabTransformer: shapes, mixer wiring, the missing-value code, parameter counts."""

from __future__ import annotations

import pytest
import torch

from katbench.mixers import GRKANMixer, KANMixer, MLPMixer
from katbench.models.tabtransformer import ColumnEmbedding, TabTransformer, count_parameters

MIXERS = {"mlp": MLPMixer, "kan": KANMixer, "grkan": GRKANMixer}


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_forward_and_mixer_blocks(mixer):
    torch.manual_seed(0)
    model = TabTransformer([3, 5], 4, mixer, depth=2, head_mixer=True,
                           head_mixer_kwargs={"num_groups": 4} if mixer == "grkan" else None)
    assert all(isinstance(layer.ff, MIXERS[mixer]) for layer in model.layers)
    assert isinstance(model.head[0], MIXERS[mixer]) and model.input_width == 2 * 32 + 4
    x_cat = torch.tensor([[0, 4], [2, 1], [1, 0]])   # 0 = missing value
    out = model(x_cat, torch.randn(3, 4))
    assert out.shape == (3,) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.embed.values.weight.grad.abs().sum() > 0


def test_plain_head_and_parameter_counts():
    model = TabTransformer([3, 5], 4, "mlp", depth=6, head_mixer=False)
    counts = count_parameters(model)
    width = 2 * 32 + 4
    head = width * 4 * width + 4 * width + 4 * width * 2 * width + 2 * width + 2 * width + 1
    assert counts["head"] == head
    ff = 6 * (32 * 128 + 128 + 128 * 32 + 32)
    assert counts["ff"] == ff
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert len(model.layers) == 6 and model.embed.columns.shape == (2, 4)


def test_continuous_only_table_is_the_head_alone():
    model = TabTransformer([], 7, "kan", depth=6)
    assert len(model.layers) == 0
    assert model(torch.zeros(5, 0, dtype=torch.long), torch.randn(5, 7)).shape == (5,)
    with pytest.raises(ValueError, match="at least one"):
        TabTransformer([], 0)


def test_column_embedding_concatenates_shared_column_id():
    emb = ColumnEmbedding([2, 3], dim=32, shared_dim=4)
    out = emb(torch.tensor([[1, 2], [0, 2]]))
    assert out.shape == (2, 2, 32)
    assert torch.equal(out[0, 1, :4], emb.columns[1]) and torch.equal(out[0, 1], out[1, 1])
    assert torch.equal(out[0, 1, 4:], emb.values.weight[2 + 2])  # column 1 starts at offset 2


def test_continuous_norm_is_a_row_layernorm_or_nothing():
    x_cont = torch.randn(4, 3) * 10 + 5
    layer = TabTransformer([], 3, cont_norm="layer")
    assert torch.allclose(layer.cont_norm(x_cont).mean(-1), torch.zeros(4), atol=1e-5)
    plain = TabTransformer([], 3, cont_norm="none")
    assert torch.equal(plain.cont_norm(x_cont), x_cont)   # row means and spreads kept
