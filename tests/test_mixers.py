"""Mixer registry: names, errors, timm drop-in, the KAT block's variance preservation and its
init options (first rational, random coefficients, one rational per channel)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from katbench.init import rational_init
from katbench.layers import (
    ChebyKANLinear,
    FastKANLinear,
    FourierKANLinear,
    GroupRational,
    KANLinear,
)
from katbench.mixers import (
    ACTIVATIONS,
    MIXERS,
    PER_CHANNEL,
    RECOMPUTE,
    ChebyKANMixer,
    FastKANMixer,
    FourierKANMixer,
    GRKANMixer,
    KANMixer,
    MLPMixer,
    PAUMixer,
    SwiGLUMixer,
    activation_class,
    build_mixer,
    mixer_settings,
)
from katbench.ops import group_rational_reference
from katbench.run import MIXER_NAMES

CLASSES = {"mlp": MLPMixer, "kan": KANMixer, "grkan": GRKANMixer, "fastkan": FastKANMixer,
           "chebykan": ChebyKANMixer, "fourierkan": FourierKANMixer, "pau": PAUMixer,
           "swiglu": SwiGLUMixer}


def test_registry_names():
    assert MIXERS == ("mlp", "kan", "grkan", "fastkan", "chebykan", "fourierkan", "pau",
                      "swiglu")
    for name, cls in CLASSES.items():
        assert type(build_mixer(name, 8)) is cls
    assert sorted(MIXERS) == MIXER_NAMES   # one conf/mixer/<name>.yaml per registered mixer


def test_unknown_mixer_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown mixer 'moe'; known mixers: mlp, kan, grkan, "
                                         r"fastkan, chebykan, fourierkan, pau, swiglu$"):
        build_mixer("moe", 8)


@pytest.mark.parametrize("name", list(CLASSES))
def test_shapes_and_defaults(name):
    mixer = build_mixer(name, 16, 32, 8)
    assert mixer(torch.randn(2, 3, 16)).shape == (2, 3, 8)
    assert build_mixer(name, 16)(torch.randn(4, 16)).shape == (4, 16)   # hidden = out = in


@pytest.mark.parametrize("cls", list(CLASSES.values()))
def test_timm_vision_transformer_takes_each_mixer(cls):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
                              num_classes=10, mlp_layer=cls)
    assert isinstance(model.blocks[0].mlp, cls)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.blocks[0].mlp.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_grkan_block_structure_and_tiny_fitting_net():
    block = build_mixer("grkan", 2, hidden_features=5, out_features=1, num_groups=1)
    assert block.act1.init == "identity" and block.act2.init == "gelu"
    assert block(torch.randn(7, 2)).shape == (7, 1)
    swish = build_mixer("grkan", 8, 16, act_init="swish", num_groups=4, order=(3, 2),
                        variant="abs_sum")
    assert swish.act2.init == "swish" and swish.act2.denominator.shape == (4, 2)
    assert swish.act1.variant == "abs_sum"


def test_grkan_widths_not_divisible_by_groups_raise_naming_the_fix():
    with pytest.raises(ValueError, match=r"in_features=2 is not divisible by num_groups=8.*"
                                         r"num_groups=1 works for any width"):
        build_mixer("grkan", 2, 5, 1)
    with pytest.raises(ValueError, match=r"hidden_features=20 is not divisible by num_groups=8"):
        build_mixer("grkan", 16, 20)


def test_grkan_block_preserves_layernormed_variance():
    ratios = []
    for seed in range(3):
        torch.manual_seed(seed)
        block = build_mixer("grkan", 192, 768)
        x = nn.functional.layer_norm(torch.randn(2048, 192), (192,))
        with torch.no_grad():
            ratios.append(block(x).var().item() / x.var().item())
    assert sum(ratios) / len(ratios) == pytest.approx(1.0, rel=0.1), ratios


def test_grkan_weights_follow_the_gains():
    torch.manual_seed(0)
    block = build_mixer("grkan", 256, 1024)
    assert block.fc1.weight.std().item() == pytest.approx((1 / 256) ** 0.5, rel=0.02)
    expected = (1 / (block.act2.gain * 1024)) ** 0.5
    assert block.fc2.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert torch.count_nonzero(block.fc1.bias) == torch.count_nonzero(block.fc2.bias) == 0


def test_per_group_numerator_parameter_counts():
    shared = build_mixer("grkan", 64, 128, num_groups=8)
    per_group = build_mixer("grkan", 64, 128, num_groups=8, shared_numerator=False)
    linear = 64 * 128 + 128 + 128 * 64 + 64
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(shared) == linear + 2 * (6 + 8 * 4)
    assert count(per_group) == linear + 2 * (8 * 6 + 8 * 4)


def test_kan_mixer_passes_spline_settings_and_norm():
    mixer = build_mixer("kan", 4, 6, 2, grid_size=3, spline_order=2, norm_layer=nn.LayerNorm)
    assert isinstance(mixer.fc1, KANLinear) and mixer.fc1.grid_size == 3
    assert mixer.fc2.spline_weight.shape == (2, 6, 5)
    assert isinstance(mixer.norm, nn.LayerNorm) and mixer.norm.normalized_shape == (6,)


def test_mlp_accepts_an_activation_name_and_dropout_acts_in_training_only():
    mixer = build_mixer("mlp", 8, 32, act_layer="relu", drop=0.5)
    assert isinstance(mixer.act, nn.ReLU)
    x = torch.randn(64, 8)
    mixer.eval()
    torch.testing.assert_close(mixer(x), mixer(x))
    mixer.train()
    assert not torch.allclose(mixer(x), mixer(x))


def test_grkan_dropout_and_norm_sit_on_the_hidden_features():
    block = build_mixer("grkan", 8, 16, num_groups=4, drop=0.5, norm_layer=nn.LayerNorm)
    assert isinstance(block.act2, GroupRational)
    assert block.norm.normalized_shape == (16,) and block.drop1.p == block.drop2.p == 0.5


@pytest.mark.parametrize(("name", "layer", "kwargs", "per_edge"), [
    ("kan", KANLinear, {"grid_size": 3, "spline_order": 2}, 3 + 2 + 2),
    ("fastkan", FastKANLinear, {"grid_size": 6}, 6 + 1),
    ("chebykan", ChebyKANLinear, {"degree": 3}, 3 + 1),
    ("fourierkan", FourierKANLinear, {"grid_size": 2}, 2 * 2)])
def test_kan_mixers_are_two_layers_of_their_kind(name, layer, kwargs, per_edge):
    """layer(in -> hidden) -> norm -> layer(hidden -> out), the settings passed to both."""
    mixer = build_mixer(name, 4, 6, 2, norm_layer=nn.LayerNorm, **kwargs)
    assert type(mixer.fc1) is layer and type(mixer.fc2) is layer
    assert (mixer.fc1.in_features, mixer.fc1.out_features) == (4, 6)
    assert (mixer.fc2.in_features, mixer.fc2.out_features) == (6, 2)
    assert isinstance(mixer.norm, nn.LayerNorm) and mixer.norm.normalized_shape == (6,)
    edges = 4 * 6 + 6 * 2
    extra = {"kan": 0, "fastkan": 2 * (4 + 6) + 6 + 2, "chebykan": 0, "fourierkan": 6 + 2}
    kan_params = sum(p.numel() for p in (*mixer.fc1.parameters(), *mixer.fc2.parameters()))
    assert kan_params == edges * per_edge + extra[name]
    x = torch.randn(3, 4)
    torch.testing.assert_close(mixer(x), mixer.fc2(mixer.norm(mixer.fc1(x))))


def test_pau_is_the_mlp_with_one_fitted_rational():
    torch.manual_seed(0)
    pau = build_mixer("pau", 8, 16, 4, act_init="relu", order=(3, 2))
    assert isinstance(pau.act, GroupRational) and pau.act.num_groups == 1
    assert pau.act.init == "relu" and pau.act.order == (3, 2)
    assert pau.act.numerator.shape == (1, 4) and pau.act.denominator.shape == (1, 2)
    mlp_params = 8 * 16 + 16 + 16 * 4 + 4
    assert sum(p.numel() for p in pau.parameters()) == mlp_params + 4 + 2
    x = torch.randn(5, 8)
    torch.testing.assert_close(pau(x), pau.fc2(pau.act(pau.fc1(x))))
    pau.act(x).sum().backward()   # one rational, shared by all channels, learnable
    assert pau.act.denominator.grad.shape == (1, 2)


def test_swiglu_gates_with_silu_whatever_the_host_activation():
    torch.manual_seed(0)
    block = build_mixer("swiglu", 8, 16, 4, act_layer=nn.GELU)
    assert isinstance(block.act, nn.SiLU)
    assert sum(p.numel() for p in block.parameters()) == 2 * (8 * 16 + 16) + 16 * 4 + 4
    x = torch.randn(5, 8)
    gate = nn.functional.silu(block.fc1_g(x))
    torch.testing.assert_close(block(x), block.fc2(gate * block.fc1_x(x)))


def test_reset_parameters_reinitialises():
    for name in ("kan", "grkan", "fastkan", "chebykan", "fourierkan"):
        mixer = build_mixer(name, 8, 8, **({"num_groups": 4} if name == "grkan" else {}))
        before = [p.clone() for p in mixer.parameters()]
        mixer.reset_parameters()
        assert any(not torch.equal(a, b) for a, b in zip(before, mixer.parameters(),
                                                          strict=True))


def test_unknown_keyword_is_rejected():
    with pytest.raises(TypeError, match="num_groups"):
        build_mixer("mlp", 8, num_groups=2)


class Unfused(nn.Module):
    """The KAT block written with the plain modules, as the fused chain must behave."""

    def __init__(self, block: GRKANMixer) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        return b.drop2(b.fc2(b.norm(b.drop1(b.act2(b.fc1(b.act1(x)))))))


@pytest.mark.parametrize("recompute", RECOMPUTE)
@pytest.mark.parametrize("norm_layer,bias", [(None, True), (nn.LayerNorm, True), (None, False)])
@pytest.mark.parametrize("autocast", [False, True])
def test_grkan_block_matches_the_unfused_modules(recompute, norm_layer, bias, autocast,
                                                 output_and_gradients):
    """The fused chain (bias gradients summed by the rationals' backward, F(x) written by it
    where not kept) gives the plain modules' output and gradients, in every recompute mode."""
    torch.manual_seed(0)
    block = GRKANMixer(16, 32, 8, num_groups=4, norm_layer=norm_layer, bias=bias,
                       recompute=recompute)
    x = torch.randn(2, 7, 16)
    tolerance = 2e-2 if autocast else 1e-5
    for e, g in zip(output_and_gradients(Unfused(block), x, autocast),
                    output_and_gradients(block, x, autocast), strict=True):
        assert g.dtype == e.dtype
        torch.testing.assert_close(g, e, rtol=tolerance, atol=tolerance)


@pytest.mark.cuda
@pytest.mark.parametrize("recompute", RECOMPUTE)
def test_grkan_block_matches_the_unfused_modules_on_cuda(recompute, output_and_gradients):
    """The CUDA kernels' fused outputs (16-byte vectors at ViT-T widths) under bf16 autocast."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    block = GRKANMixer(192, 768, 192, recompute=recompute).cuda()
    x = torch.randn(4, 197, 192, device="cuda")
    for e, g in zip(output_and_gradients(Unfused(block), x, True),
                    output_and_gradients(block, x, True), strict=True):
        assert g.dtype == e.dtype
        scale = e.double().abs().max()
        assert (g.double() - e.double()).abs().max() / scale < 2e-2


def test_grkan_block_higher_derivatives():
    """create_graph=True (PINN residuals) differentiates the recomputing op's backward:
    gradgradcheck."""
    torch.manual_seed(0)
    block = GRKANMixer(4, 8, 2, num_groups=2, recompute="both").double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: block(t), (x,))
    params = [*block.parameters()]
    (dx,) = torch.autograd.grad(block(x).sum(), x, create_graph=True)
    got = torch.autograd.grad(dx.square().sum(), params, materialize_grads=True)
    (dx,) = torch.autograd.grad(Unfused(block)(x).sum(), x, create_graph=True)
    expected = torch.autograd.grad(dx.square().sum(), params, materialize_grads=True)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_float64_mixers_stay_float64_under_autocast(name):
    """As torch's own layers: autocast leaves a float64 model (the PINN, whose trainer enables
    autocast on a GPU) in float64, u' and u'' included (grkan and pau crashed there)."""
    torch.manual_seed(0)
    mixer = build_mixer(name, 8, 16, 2).double()
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    expected = mixer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x)
        (dx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (d2x,) = torch.autograd.grad(dx.sum(), x)
    assert y.dtype == dx.dtype == d2x.dtype == torch.float64
    torch.testing.assert_close(y, expected)


def test_grkan_block_compiles_without_graph_breaks(output_and_gradients):
    torch.manual_seed(0)
    block = GRKANMixer(16, 32, 8, num_groups=4, recompute="first")
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 7, 16)
    for e, g in zip(output_and_gradients(block, x), output_and_gradients(compiled, x),
                    strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_grkan_recompute_trades_the_rational_outputs_for_memory(saved_bytes):
    rows, width, hidden = 64, 16, 64
    x = torch.randn(rows, width, requires_grad=True)
    blocks = {mode: build_mixer("grkan", width, hidden, recompute=mode) for mode in RECOMPUTE}
    blocks["mlp"] = build_mixer("mlp", width, hidden)
    kept = {name: saved_bytes(lambda m=m: m(x)) for name, m in blocks.items()}
    assert build_mixer("grkan", width, hidden).recompute == "first"  # the MLP's memory
    # "first" drops F1(x) (rows x width, float32), the one activation the MLP does not keep;
    # "both" also F2(h) (rows x hidden).
    first = blocks["first"]
    assert kept["none"] - kept["first"] == 4 * rows * width
    assert kept["first"] - kept["both"] == 4 * rows * hidden
    # Beyond the MLP's: the rationals' coefficients and fc1's bias (added by the second rational).
    extra = [*first.act1.parameters(), *first.act2.parameters(), first.fc1.bias]
    assert kept["first"] - kept["mlp"] == sum(4 * p.numel() for p in extra)
    assert kept["both"] < kept["mlp"]


def test_grkan_unknown_recompute_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown recompute=True; pick one of"):
        build_mixer("grkan", 16, 32, recompute=True)


# Paper Table 8's fitted (first rational, second rational) inits, plus gelu -> gelu.
FITTED_INITS = [("identity", "identity"), ("swish", "swish"), ("gelu", "gelu"),
                ("identity", "gelu"), ("identity", "swish")]


def test_grkan_first_rational_starts_as_first_init():
    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 601)[:, None].expand(-1, 256)
    identity = build_mixer("grkan", 256, 512)
    assert identity.act1.init == "identity"
    with torch.no_grad():
        torch.testing.assert_close(identity.act1(x), x, atol=1e-6, rtol=1e-6)
        swish = build_mixer("grkan", 256, 512, first_init="swish")
        torch.testing.assert_close(swish.act1(x), nn.functional.silu(x), atol=2e-3, rtol=0)
    # fc1 reads the first rational: its weights follow that rational's gain
    expected = (1 / (rational_init("swish").gain * 256)) ** 0.5
    assert swish.fc1.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert identity.fc1.weight.std().item() == pytest.approx((1 / 256) ** 0.5, rel=0.02)


@pytest.mark.parametrize("first_init,act_init", FITTED_INITS)
def test_grkan_fitted_inits_preserve_layernormed_variance(first_init, act_init):
    ratios = []
    for seed in range(3):
        torch.manual_seed(seed)
        block = build_mixer("grkan", 192, 768, first_init=first_init, act_init=act_init)
        x = nn.functional.layer_norm(torch.randn(2048, 192), (192,))
        with torch.no_grad():
            ratios.append(block(x).var().item() / x.var().item())
    assert sum(ratios) / len(ratios) == pytest.approx(1.0, rel=0.1), ratios


def test_grkan_random_init_is_xavier_per_seed_with_torch_default_linears():
    def block(seed: int) -> GRKANMixer:
        torch.manual_seed(seed)
        return build_mixer("grkan", 256, 512, first_init="random", act_init="random",
                           shared_numerator=False)

    first, second, again = block(0), block(1), block(0)
    for (name, p), q in zip(first.named_parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q), name
    for act in ("act1", "act2"):
        for coefficients in ("numerator", "denominator"):
            drawn = getattr(getattr(first, act), coefficients)
            other = getattr(getattr(second, act), coefficients)
            assert not torch.equal(drawn, other) and torch.isfinite(drawn).all()
            bound = (6 / sum(drawn.shape)) ** 0.5      # Xavier uniform: U(-bound, bound)
            assert 0.5 * bound < drawn.abs().max().item() <= bound
    # No variance-preserving init after a random rational: nn.Linear's U(+-1/sqrt(d_in)),
    # weights and biases, std 1/sqrt(3 d_in).
    assert first.fc1.weight.std().item() == pytest.approx((1 / (3 * 256)) ** 0.5, rel=0.02)
    assert first.fc2.weight.std().item() == pytest.approx((1 / (3 * 512)) ** 0.5, rel=0.02)
    assert 0 < first.fc2.bias.abs().max().item() <= 512 ** -0.5
    with torch.no_grad():
        assert torch.isfinite(first(100 * torch.randn(64, 256))).all()   # Q >= 1: no poles
    with pytest.raises(ValueError, match="has no fitted gain"):
        _ = first.act1.gain


def test_grkan_per_channel_gives_every_channel_its_own_rational():
    block = build_mixer("grkan", 12, 20, 6, num_groups=PER_CHANNEL, shared_numerator=False)
    assert block.act1.denominator.shape == (12, 4) and block.act2.numerator.shape == (20, 6)
    with torch.no_grad():
        block.act1.numerator.add_(0.1 * torch.randn_like(block.act1.numerator))
        block.act1.denominator.add_(0.1 * torch.randn_like(block.act1.denominator))
    x = torch.randn(5, 12)
    expected = torch.cat([group_rational_reference(
        x[:, i:i + 1], block.act1.numerator[i:i + 1], block.act1.denominator[i:i + 1],
        "sum_abs") for i in range(12)], dim=1)
    torch.testing.assert_close(block.act1(x), expected)
    assert block(x).shape == (5, 6)
    with pytest.raises(ValueError, match=r"num_groups='channels'; use a positive integer or "
                                         r"'per_channel'"):
        build_mixer("grkan", 8, 8, num_groups="channels")


def test_mixer_settings_are_the_keywords_beyond_timms_signature():
    assert mixer_settings("mlp") == mixer_settings("swiglu") == []
    assert {"num_groups", "first_init", "act_init", "order", "variant"} <= \
        set(mixer_settings("grkan"))
    assert {"grid_size", "spline_order"} <= set(mixer_settings("kan"))   # KANLinear's
    assert mixer_settings("chebykan") == ["degree"]


@pytest.mark.parametrize("norm", [None, nn.LayerNorm])
def test_mlp_and_swiglu_are_timms_modules_weight_for_weight(norm):
    """The same parameter names, initial weights from the same seed and outputs as timm's
    ``Mlp`` and ``SwiGLU`` (init_weights included), so ViT checkpoints and seeds carry over."""
    from timm.layers import Mlp, SwiGLU

    x = torch.randn(3, 8)
    for ours, theirs in ((lambda: MLPMixer(8, 16, 4, act_layer="gelu", norm_layer=norm),
                          lambda: Mlp(8, 16, 4, act_layer=nn.GELU, norm_layer=norm)),
                         (lambda: SwiGLUMixer(8, 16, 4, norm_layer=norm),
                          lambda: SwiGLU(8, 16, 4, norm_layer=norm))):
        modules = []
        for build in (ours, theirs):
            torch.manual_seed(0)
            modules.append(build())
            if hasattr(modules[-1], "init_weights"):
                modules[-1].init_weights()
        a, b = modules
        assert list(a.state_dict()) == list(b.state_dict())
        for key, value in b.state_dict().items():
            assert torch.equal(a.state_dict()[key], value), key
        assert torch.equal(a(x), b(x))


def test_activation_names_are_timms():
    from timm.layers import get_act_layer

    x = torch.linspace(-4, 4, 101)
    for name in ACTIVATIONS:
        assert torch.equal(activation_class(name)()(x), get_act_layer(name)()(x)), name
    assert activation_class("hard_mish") is get_act_layer("hard_mish")   # timm's own, lazily


def test_importing_katbench_for_a_run_imports_neither_timm_nor_torchvision():
    code = ("import sys, katbench, katbench.mixers, katbench.run, katbench.train, "
            "katbench.tasks; print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
