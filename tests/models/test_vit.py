"""ViT/KAT models: timm registry, paper parameter counts and FLOPs, init, forward/backward."""

from __future__ import annotations

import pytest
import timm
import torch

import katbench.models.vit  # noqa: F401  (registers the models)
from katbench.layers import GroupRational
from katbench.models.info import count_flops, count_params, model_info
from katbench.models.vit import KATVisionTransformer, activation_layer, mimetic_init_, vit_mixer

# Paper Table 5: params (M), FLOPs (G, fvcore convention) at 224x224.
PAPER = {"vit_tiny_patch16_224": (5.7, 1.08), "kat_tiny_patch16_224": (5.7, 1.13),
         "vit_small_patch16_224": (22.1, 4.25), "kat_small_patch16_224": (22.1, 4.35),
         "vit_base_patch16_224": (86.6, 16.87), "kat_base_patch16_224": (86.6, 17.06)}


def tiny(mixer: str, **kwargs) -> KATVisionTransformer:
    return vit_mixer(mixer, img_size=16, patch_size=4, num_classes=5, in_chans=3, embed_dim=32,
                     depth=2, num_heads=2, **kwargs)


def test_registered_names():
    names = set(timm.list_models("kat_*")) | set(timm.list_models("vit_*_kan_*"))
    for size in ("tiny", "small", "base"):
        for variant in ("", "swish_", "gelu_"):
            assert f"kat_{size}_{variant}patch16_224" in names
        assert f"vit_{size}_kan_patch16_224" in names


@pytest.mark.parametrize("name", sorted(PAPER))
def test_params_and_flops_match_paper(name):
    info = model_info(name)  # built on the meta device
    params, gflops = PAPER[name]
    assert info["params_m"] == pytest.approx(params, rel=0.01)
    assert info["gflops"] == pytest.approx(gflops, rel=0.02)


def test_kat_defaults():
    with torch.device("meta"):
        swish = timm.create_model("kat_tiny_patch16_224")
        gelu = timm.create_model("kat_tiny_gelu_patch16_224")
    mlp = swish.blocks[0].mlp
    assert (mlp.act1.init, mlp.act2.init, gelu.blocks[0].mlp.act2.init) == \
        ("identity", "swish", "gelu")
    assert swish.attn_init == "mimetic" and mlp.act1.num_groups == 8


def test_grkan_keeps_its_variance_preserving_init():
    # timm's ViT init draws every nn.Linear from N(0, 0.02^2); the KAT mixer must redraw its own.
    torch.manual_seed(0)
    model = vit_mixer("grkan", img_size=32, patch_size=8, num_classes=10, in_chans=3,
                      embed_dim=64, depth=1, num_heads=2, mixer_kwargs={"act_init": "gelu"})
    fc1 = model.blocks[0].mlp.fc1.weight
    assert fc1.std().item() == pytest.approx(64 ** -0.5, rel=0.05)  # identity gain 1, d_in 64
    vit = vit_mixer("mlp", img_size=32, patch_size=8, num_classes=10, in_chans=3, embed_dim=64,
                    depth=1, num_heads=2)
    assert vit.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_mimetic_init_products():
    torch.manual_seed(0)
    model = tiny("mlp", attn_init="mimetic")
    attn = model.blocks[0].attn
    d, hd = 32, attn.head_dim
    wq, wk, wv = attn.qkv.weight[:d], attn.qkv.weight[d:2 * d], attn.qkv.weight[2 * d:]
    qk = wq[:hd].t() @ wk[:hd]          # head 0: W_q^T W_k ~ 0.7 Z + 0.7 I (rank hd)
    vp = attn.proj.weight @ wv          # W_proj W_v = 0.4 Z - 0.4 I exactly
    assert torch.diagonal(qk).mean().item() > 0.2
    assert torch.diagonal(vp).mean().item() == pytest.approx(-0.4, abs=0.05)
    off = vp - torch.diagonal(vp).diag()
    assert off.std().item() == pytest.approx(0.4 / d ** 0.5, rel=0.2)
    bad = type("Attn", (), {"qkv": torch.nn.Linear(4, 6), "proj": torch.nn.Linear(4, 4),
                            "head_dim": 2})()
    with pytest.raises(ValueError, match="mimetic init needs"):
        mimetic_init_(bad)


def test_linear_mixers_keep_timms_init_and_kan_layers_their_own():
    """mlp, pau and swiglu are built from nn.Linear: timm's N(0, 0.02^2) (SwiGLU's gate: timm's
    near-zero weight and unit bias); pau's rational stays the fitted GELU. The KAN mixers
    redraw their layers after timm's init."""
    torch.manual_seed(0)
    models = {m: vit_mixer(m, img_size=32, patch_size=8, num_classes=10, in_chans=3,
                           embed_dim=64, depth=1, num_heads=2)
              for m in ("pau", "swiglu", "chebykan", "fourierkan")}
    pau = models["pau"].blocks[0].mlp
    assert pau.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    torch.testing.assert_close(pau.act.denominator.detach(),
                               torch.tensor([pau.act.fitted.denominator]))
    swiglu = models["swiglu"].blocks[0].mlp
    assert swiglu.fc1_x.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert swiglu.fc1_g.weight.abs().max() < 1e-4 and bool((swiglu.fc1_g.bias == 1).all())
    cheby = models["chebykan"].blocks[0].mlp.fc1.coefficients
    assert cheby.std().item() == pytest.approx((64 * 5) ** -0.5, rel=0.1)
    fourier = models["fourierkan"].blocks[0].mlp.fc2
    assert fourier.fourier_weight.std().item() == pytest.approx((256 * 5) ** -0.5, rel=0.1)


@pytest.mark.parametrize("mixer", ["mlp", "kan", "grkan", "fastkan", "chebykan", "fourierkan",
                                   "pau", "swiglu"])
def test_forward_backward_tiny(mixer):
    torch.manual_seed(0)
    model = tiny(mixer)
    x = torch.randn(3, 3, 16, 16)
    out = model(x)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["gelu", "relu", "silu", "prelu", "pau"])
def test_table6_activations(name):
    model = tiny("mlp", activation=name)
    act = model.blocks[0].mlp.act
    if name == "pau":
        assert isinstance(act, GroupRational) and act.num_groups == 1
        assert act.init == "gelu"
    else:
        assert type(act).__name__.lower().startswith(name[:4])
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="unknown activation"):
        activation_layer("tanh")
    with pytest.raises(ValueError, match="applies to mixer='mlp' only"):
        tiny("grkan", activation="relu")
    with pytest.raises(ValueError, match="unknown attn_init"):
        tiny("mlp", attn_init="xavier")


def test_flop_conventions_on_tiny():
    # One block of width 32, hidden 128, 17 tokens: linear MACs + LN + rationals (paper rules).
    model = tiny("grkan")
    tokens, d, h = 17, 32, 128
    linear = 2 * tokens * (3 * d * d + d * d + 2 * d * h) + 16 * (3 * 16) * d + d * 5
    norms = 5 * tokens * d * 5          # 2 per block x 2 blocks + final
    rationals = 2 * 21 * tokens * (d + h)
    assert count_flops(model, (3, 16, 16)) == linear + norms + rationals
    assert count_params(model) == sum(p.numel() for p in model.parameters())
