"""THE channel-mixer registry: ``build_mixer(name, in_features, hidden_features, out_features)``.

Every mixer maps ``(..., in_features) -> (..., out_features)`` through ``hidden_features`` and
takes timm's ``Mlp`` constructor signature (``in_features, hidden_features=None,
out_features=None, act_layer, norm_layer=None, bias=True, drop=0.0``, plus timm's ``device`` and
``dtype``), so each class can be passed to timm models as ``mlp_layer``. ``hidden_features`` and
``out_features`` default to ``in_features``; ``norm_layer`` normalises the hidden features;
``drop`` is applied after the hidden nonlinearity and after the output, as in timm.

* ``mlp``: fc1 -> act -> drop -> norm -> fc2 -> drop (timm's ``Mlp``: the same parameter names
  and construction order, so its checkpoints load; ``act_layer`` may be an activation name such
  as ``"gelu"``, timm's names).
* ``kan``, ``fastkan``, ``chebykan``, ``fourierkan``: layer(in -> hidden) -> drop -> norm ->
  layer(hidden -> out) -> drop with the B-spline :class:`~katbench.layers.KANLinear`, Gaussian
  RBF :class:`~katbench.layers.FastKANLinear`, Chebyshev
  :class:`~katbench.layers.ChebyKANLinear` or Fourier :class:`~katbench.layers.FourierKANLinear`
  layers; the remaining keywords (``grid_size``, ``degree``, ...) go to both layers.
  ``act_layer`` and ``bias`` are accepted for the signature only: the layers carry their own
  nonlinearity and constant terms.
* ``grkan``: the KAT block, GroupRational(``first_init``) -> fc1 -> GroupRational(``act_init``)
  -> drop -> norm -> fc2 -> drop, fc1/fc2 drawn variance-preserving from the rationals' gains.
  ``first_init`` (default ``"identity"``) and ``act_init`` name fitted functions, or
  ``"random"``: Xavier-drawn coefficients and PyTorch's default init for the linear layer
  after that rational (the paper's "Random", Tables 8 and 13). ``num_groups`` (default 8) must
  divide both ``in_features`` and ``hidden_features``: use ``num_groups=1`` for small widths
  such as the ``[2, 5, 1]`` fitting nets, or ``"per_channel"`` for one rational per channel
  (``in_features`` groups before fc1, ``hidden_features`` after it). ``act_layer`` is
  accepted for the signature only: the rationals are the nonlinearity. fc1's bias is added by
  the second rational, whose backward kernel sums its gradient. ``recompute`` picks which
  rational outputs the backward recomputes instead of keeping
  (:func:`katbench.layers.rational_linear`): ``"first"`` (default) the identity-initialised
  one, the activation the GELU MLP does not have: its backward kernel writes it again, one
  D-wide write, so the block keeps what the MLP keeps; ``"both"`` also the hidden one, by one
  more 4D-wide forward kernel (less memory than the MLP); ``"none"`` keeps both.
* ``pau``: the ``mlp`` with one learnable rational as its activation, shared by all channels
  (Padé activation unit, Molina et al. 2020: a :class:`~katbench.layers.GroupRational` with one
  group, the safe ``sum_abs`` denominator), started from the rational fitted to ``act_init``
  (default ``"gelu"``). ``act_layer`` is accepted for the signature only.
* ``swiglu``: timm's ``SwiGLU`` (the same parameters), (SiLU(x W_g + b_g) * (x W_x + b_x)) ->
  drop -> norm -> fc2 -> drop: two input projections of width ``hidden_features``, so 1.5x the
  ``mlp``'s parameters at the same width. The gate is always SiLU (``act_layer`` is accepted
  for the signature only).

``mlp``, ``pau`` and ``swiglu`` take their linear layers' initialisation from the host model
(timm's ViT init, or torch's); the other mixers have their own, in ``reset_parameters()``.
Importing this module does not import timm (nor torchvision through it): a run pays for them
only where its task needs them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from katbench.layers import (
    ChebyKANLinear,
    FastKANLinear,
    FourierKANLinear,
    GroupRational,
    KANLinear,
    init_linear_after_,
    rational_linear,
)

__all__ = ["ACTIVATIONS", "DEFAULT_RECOMPUTE", "MIXERS", "PER_CHANNEL", "RECOMPUTE",
           "ChebyKANMixer", "FastKANMixer", "FourierKANMixer", "GRKANMixer", "KANMixer",
           "MLPMixer", "PAUMixer", "SwiGLUMixer", "TwoLayerKANMixer", "activation_class",
           "build_mixer", "mixer_class", "mixer_settings", "rational_activation",
           "register_mixer"]

_REGISTRY: dict[str, type[nn.Module]] = {}
MIXERS: tuple[str, ...] = ()

ActLayer = type[nn.Module] | str | Callable[[], nn.Module]
NormLayer = Callable[[int], nn.Module] | None
# GRKANMixer's recompute modes: which rationals' outputs the backward recomputes, and its default.
RECOMPUTE = ("none", "first", "both")
DEFAULT_RECOMPUTE = "first"
# GRKANMixer's num_groups for one rational per channel (the paper's "no grouping", Table 13).
PER_CHANNEL = "per_channel"


def register_mixer(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a mixer to the registry under ``name``."""
    def add(cls: type[nn.Module]) -> type[nn.Module]:
        global MIXERS
        if name in _REGISTRY:
            raise ValueError(f"mixer {name!r} is already registered ({_REGISTRY[name]})")
        _REGISTRY[name] = cls
        MIXERS = tuple(_REGISTRY)
        return cls
    return add


def mixer_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown mixer {name!r}; known mixers: {', '.join(MIXERS)}")
    return _REGISTRY[name]


def mixer_settings(name: str) -> list[str]:
    """The keyword settings of mixer ``name`` beyond timm's ``Mlp`` signature (``num_groups``,
    ``act_init``, ``grid_size``, ...): its constructor's, plus its KAN layers' for the
    two-layer KAN mixers."""
    cls = mixer_class(name)
    signature = {**inspect.signature(cls).parameters}
    if issubclass(cls, TwoLayerKANMixer):
        signature |= inspect.signature(cls.layer_class).parameters
    timm = {"in_features", "hidden_features", "out_features", "act_layer", "norm_layer", "bias",
            "drop", "device", "dtype"}
    return sorted(k for k, p in signature.items() if k not in timm and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def build_mixer(name: str, in_features: int, hidden_features: int | None = None,
                out_features: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate the mixer registered as ``name``; ``kwargs`` go to its constructor."""
    return mixer_class(name)(in_features, hidden_features, out_features, **kwargs)


# Activation names of timm's get_act_layer that torch provides (the same functions); any other
# name goes to timm's.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "silu": nn.SiLU, "swish": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "mish": nn.Mish,
    "elu": nn.ELU, "selu": nn.SELU, "celu": nn.CELU, "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU, "relu6": nn.ReLU6, "hard_swish": nn.Hardswish,
    "hard_sigmoid": nn.Hardsigmoid, "identity": nn.Identity}


def activation_class(act_layer: ActLayer) -> Callable[[], nn.Module]:
    """``act_layer`` itself, or the activation it names (timm's names)."""
    if not isinstance(act_layer, str):
        return act_layer
    if act_layer in ACTIVATIONS:
        return ACTIVATIONS[act_layer]
    from timm.layers import get_act_layer

    return get_act_layer(act_layer)


def _hidden_tail(hidden: int, norm_layer: NormLayer, drop: float) -> tuple[nn.Module, ...]:
    """(drop1, norm, drop2) as in timm's Mlp."""
    norm = norm_layer(hidden) if norm_layer is not None else nn.Identity()
    return nn.Dropout(drop), norm, nn.Dropout(drop)


def _place(module: nn.Module, device: Any, dtype: torch.dtype | None) -> None:
    if device is not None or dtype is not None:
        module.to(device=device, dtype=dtype)


@register_mixer("mlp")
class MLPMixer(nn.Module):
    """fc1 -> act -> drop -> norm -> fc2 -> drop, timm's two-layer ``Mlp`` (its parameter names
    and construction order: the same initial weights from the same seed)."""

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: ActLayer = nn.GELU,
                 norm_layer: NormLayer = None, bias: bool = True, drop: float = 0.0,
                 device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias, device=device, dtype=dtype)
        self.act = activation_class(act_layer)()
        self.drop1, self.norm, self.drop2 = _hidden_tail(hidden_features, norm_layer, drop)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias,
                             device=device, dtype=dtype)
        _place(self, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class TwoLayerKANMixer(nn.Module):
    """``layer_class(in, hidden)`` -> drop -> norm -> ``layer_class(hidden, out)`` -> drop.

    The shared body of the KAN-layer mixers; a subclass names its layer in ``layer_class``.
    ``layer_kwargs`` (``grid_size``, ``spline_order``, ``degree``, ...) go to both layers.
    """

    layer_class: ClassVar[type[nn.Module]]

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: ActLayer = nn.GELU,
                 norm_layer: NormLayer = None, bias: bool = True, drop: float = 0.0,
                 device: Any = None, dtype: torch.dtype | None = None,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = self.layer_class(in_features, hidden_features, **layer_kwargs)
        self.drop1, self.norm, self.drop2 = _hidden_tail(hidden_features, norm_layer, drop)
        self.fc2 = self.layer_class(hidden_features, out_features, **layer_kwargs)
        _place(self, device, dtype)

    def reset_parameters(self) -> None:
        """Re-initialise both KAN layers."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.fc1(x))
        return self.drop2(self.fc2(self.norm(x)))


@register_mixer("kan")
class KANMixer(TwoLayerKANMixer):
    """Two B-spline KAN layers (efficient-kan's ``KANLinear``)."""

    layer_class = KANLinear


@register_mixer("grkan")
class GRKANMixer(nn.Module):
    r"""KAT block (paper Eq. 7, Fig. 4): :math:`W_2 F_2(W_1 F_1(x) + c_1) + c_2`.

    ``F_1`` starts as ``first_init`` (the identity by default) and ``F_2`` as ``act_init``
    (``"gelu"`` replaces a ViT MLP; any function of :mod:`katbench.init`, or ``"random"``);
    ``W_k`` is drawn from :math:`\mathcal N(0, 1/(\alpha_k d_{in}))` with the gain of ``F_k``
    so that a LayerNorm'd input keeps its variance (PyTorch's default init after a random
    ``F_k``: :func:`~katbench.layers.init_linear_after_`).
    """

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: ActLayer = nn.GELU,
                 norm_layer: NormLayer = None, bias: bool = True, drop: float = 0.0,
                 device: Any = None, dtype: torch.dtype | None = None,
                 num_groups: int | str = 8, first_init: str = "identity",
                 act_init: str = "gelu", order: tuple[int, int] = (5, 4),
                 variant: str = "sum_abs", shared_numerator: bool = True,
                 recompute: str = DEFAULT_RECOMPUTE) -> None:
        super().__init__()
        if recompute not in RECOMPUTE:
            raise ValueError(f"grkan: unknown recompute={recompute!r}; pick one of {RECOMPUTE}")
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        groups = _groups(num_groups, in_features, hidden_features)
        rational = {"order": tuple(order), "variant": variant,
                    "shared_numerator": shared_numerator}
        self.act1 = GroupRational(groups[0], init=first_init, **rational)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act2 = GroupRational(groups[1], init=act_init, **rational)
        self.drop1, self.norm, self.drop2 = _hidden_tail(hidden_features, norm_layer, drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.recompute = recompute
        self.reset_parameters()
        _place(self, device, dtype)

    def reset_parameters(self) -> None:
        """Fitted (or random) rationals, then each linear layer from the rational before it:
        variance-preserving with zero bias, or PyTorch's default after a random one."""
        self.act1.reset_parameters()
        self.act2.reset_parameters()
        init_linear_after_(self.fc1, self.act1)
        init_linear_after_(self.fc2, self.act2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fc1's bias is added by act2 (F2(W1 F1(x) + c1)), whose backward kernel sums its
        # gradient: no separate reduction over the rows (Megatron's bias-GELU fusion).
        hidden = rational_linear(x, self.act1, self.fc1, recompute=self.recompute != "none",
                                 skip_bias=True)
        if self.recompute == "both" and self._direct_hidden():
            return self.drop2(rational_linear(hidden, self.act2, self.fc2, recompute=True,
                                              input_bias=self.fc1.bias, lowest_peak=True))
        hidden = self.act2(hidden, self.fc1.bias)
        return self.drop2(self.fc2(self.norm(self.drop1(hidden))))

    def _direct_hidden(self) -> bool:
        """Whether act2's output goes straight into fc2 (no norm, no active dropout)."""
        dropout = self.training and self.drop1.p > 0
        return isinstance(self.norm, nn.Identity) and not dropout


def _groups(num_groups: int | str, in_features: int, hidden_features: int) -> tuple[int, int]:
    """The group counts of GRKANMixer's two rationals (on ``in_features`` and
    ``hidden_features`` channels) for its ``num_groups`` setting."""
    if num_groups == PER_CHANNEL:
        return in_features, hidden_features
    if isinstance(num_groups, str) or num_groups < 1:
        raise ValueError(f"grkan: num_groups={num_groups!r}; use a positive integer or "
                         f"{PER_CHANNEL!r} (one rational per channel)")
    for label, width in (("in_features", in_features), ("hidden_features", hidden_features)):
        if width % num_groups != 0:
            raise ValueError(
                f"grkan: {label}={width} is not divisible by num_groups={num_groups}; "
                "pass a divisor of both widths (num_groups=1 works for any width)")
    return num_groups, num_groups


@register_mixer("fastkan")
class FastKANMixer(TwoLayerKANMixer):
    """Two Gaussian radial-basis KAN layers (FastKAN)."""

    layer_class = FastKANLinear


@register_mixer("chebykan")
class ChebyKANMixer(TwoLayerKANMixer):
    """Two Chebyshev-polynomial KAN layers (ChebyKAN)."""

    layer_class = ChebyKANLinear


@register_mixer("fourierkan")
class FourierKANMixer(TwoLayerKANMixer):
    """Two Fourier-series KAN layers (FourierKAN)."""

    layer_class = FourierKANLinear


def rational_activation(act_init: str = "gelu", order: tuple[int, int] = (5, 4),
                        variant: str = "sum_abs") -> Callable[[], GroupRational]:
    """Factory of a Padé activation unit: one rational shared by every channel (one group),
    started from the rational fitted to ``act_init``."""
    return partial(GroupRational, num_groups=1, order=tuple(order), init=act_init,
                   variant=variant)


@register_mixer("pau")
class PAUMixer(MLPMixer):
    """timm's ``Mlp`` whose activation is one learnable rational per layer (PAU)."""

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: ActLayer = nn.GELU,
                 norm_layer: NormLayer = None, bias: bool = True, drop: float = 0.0,
                 device: Any = None, dtype: torch.dtype | None = None, act_init: str = "gelu",
                 order: tuple[int, int] = (5, 4), variant: str = "sum_abs") -> None:
        super().__init__(in_features, hidden_features, out_features,
                         act_layer=rational_activation(act_init, order, variant),
                         norm_layer=norm_layer, bias=bias, drop=drop, device=device, dtype=dtype)


@register_mixer("swiglu")
class SwiGLUMixer(nn.Module):
    """timm's ``SwiGLU`` (its parameter names and construction order): SiLU(fc1_g(x)) *
    fc1_x(x) -> drop -> norm -> fc2 -> drop; ``init_weights`` is timm's gate init (weight
    N(0, 1e-6), bias 1), which timm's ViT calls."""

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: ActLayer = nn.GELU,
                 norm_layer: NormLayer = None, bias: bool = True, drop: float = 0.0,
                 device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        place = {"device": device, "dtype": dtype}
        self.fc1_g = nn.Linear(in_features, hidden_features, bias=bias, **place)
        self.fc1_x = nn.Linear(in_features, hidden_features, bias=bias, **place)
        self.act = nn.SiLU()
        self.drop1, self.norm, self.drop2 = _hidden_tail(hidden_features, norm_layer, drop)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias, **place)
        _place(self, device, dtype)

    def init_weights(self) -> None:
        if self.fc1_g.bias is not None:
            nn.init.ones_(self.fc1_g.bias)
        nn.init.normal_(self.fc1_g.weight, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1_g(x)) * self.fc1_x(x)
        return self.drop2(self.fc2(self.norm(self.drop1(x))))
