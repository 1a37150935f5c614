"""ViT and KAT (Kolmogorov-Arnold Transformer) on timm's ``VisionTransformer``.

:class:`KATVisionTransformer` is timm's ViT with every block's MLP built by
:func:`katbench.mixers.build_mixer`: ``mixer="mlp"`` is ViT/DeiT (optionally with another
activation, paper Table 6), ``"grkan"`` is KAT (rational(identity) -> fc1 -> rational(act_init)
-> fc2, paper Eq. 7), ``"kan"`` is ViT + B-spline KAN. Parameter names match timm's ViT
(``blocks.<i>.mlp.fc1`` / ``fc2``), so :mod:`katbench.models.vit_to_kat` copies ViT weights.

Initialisation: timm's ViT init (truncated normal 0.02) for attention, embeddings and head; the
mixers keep their own init (GR-KAN: fitted rationals and variance-preserving weights; KAN: its
spline init), and ``attn_init="mimetic"`` applies mimetic initialisation (Trockman & Kolter 2023)
to the attention, as the paper does for KAT (section 5.1).

Registered on ``import katbench.models.vit``: ``kat_{tiny,small,base}_patch16_224`` (second rational
fitted to Swish, the paper default; ``_swish_`` is an alias), ``kat_*_gelu_patch16_224``
(second rational fitted to GELU, the ViT->KAT transfer target) and ``vit_*_kan_patch16_224``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.vision_transformer import Attention, VisionTransformer, checkpoint_filter_fn

from katbench.mixers import activation_class, build_mixer, rational_activation

__all__ = ["ACTIVATIONS", "ATTN_INITS", "SIZES", "KATVisionTransformer", "activation_layer",
           "mimetic_init_", "vit_mixer"]

SIZES = {"tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
         "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
         "base": {"embed_dim": 768, "depth": 12, "num_heads": 12}}
ACTIVATIONS = ("gelu", "relu", "silu", "prelu", "pau")
ATTN_INITS = ("default", "mimetic")


def activation_layer(name: str) -> Any:
    """Activation factory of the ViT MLP for the paper's Table 6 comparison.

    ``gelu``/``relu``/``silu``/``prelu`` are torch's (PReLU: one learnable slope per layer);
    ``pau`` is a Padé activation unit: one learnable rational (m, n) = (5, 4) per layer
    (the ``pau`` mixer's activation), started from the GELU fit it replaces.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {ACTIVATIONS}")
    if name == "pau":
        return rational_activation("gelu")
    return activation_class(name)


def _ortho_like(dim: int, alpha: float, beta: float, sign: float) -> tuple[torch.Tensor, ...]:
    """Factors ``L, R`` with ``L @ R = alpha * Z + sign * beta * I``, Z uniform of variance 1/dim.

    The SVD ``U S V^T`` of the target gives ``L = U sqrt(S)``, ``R = sqrt(S) V^T``.
    """
    bound = math.sqrt(3.0 / dim)
    target = alpha * torch.empty(dim, dim).uniform_(-bound, bound) + sign * beta * torch.eye(dim)
    u, s, vh = torch.linalg.svd(target)
    root = s.sqrt()
    return u * root, root[:, None] * vh


@torch.no_grad()
def mimetic_init_(attn: Attention, alpha: tuple[float, float] = (0.7, 0.4),
                  beta: tuple[float, float] = (0.7, 0.4)) -> Attention:
    r"""Mimetic initialisation of one timm ``Attention`` (Trockman & Kolter, 2023).

    Per head, :math:`W_q^\top W_k \approx \alpha_1 Z + \beta_1 I` (attention starts close to
    attending to the token itself and its similar tokens), and for the whole layer
    :math:`W_{proj} W_v \approx \alpha_2 Z - \beta_2 I`, with ``Z`` random of variance 1/D. The
    constants are those of the official KAT code; biases are left to the caller's init (zero).
    """
    dim = attn.qkv.in_features
    head_dim = attn.head_dim
    weight = attn.qkv.weight
    if weight.shape[0] != 3 * dim or attn.proj.weight.shape != (dim, dim):
        raise ValueError(f"mimetic init needs qkv of shape (3D, D) and proj (D, D); got "
                         f"{tuple(weight.shape)} and {tuple(attn.proj.weight.shape)}")
    for h in range(dim // head_dim):
        left, right = _ortho_like(dim, alpha[0], beta[0], 1.0)
        rows = slice(h * head_dim, (h + 1) * head_dim)
        weight[rows] = left[:, :head_dim].t().to(weight)
        weight[dim + h * head_dim: dim + (h + 1) * head_dim] = right[:head_dim].to(weight)
    left, right = _ortho_like(dim, alpha[1], beta[1], -1.0)
    weight[2 * dim:] = right.to(weight)
    attn.proj.weight.copy_(left.to(attn.proj.weight))
    return attn


class KATVisionTransformer(VisionTransformer):
    """timm ``VisionTransformer`` whose block MLPs come from the katbench mixer registry.

    ``mixer`` / ``mixer_kwargs`` go to ``build_mixer`` (e.g. ``{"act_init": "swish",
    "num_groups": 8}`` for ``grkan``); ``activation`` (one of :data:`ACTIVATIONS`) is the MLP
    nonlinearity when ``mixer="mlp"``; ``attn_init`` is ``"default"`` (timm) or ``"mimetic"``.
    Every other keyword is timm's ``VisionTransformer``'s.
    """

    def __init__(self, *, mixer: str = "grkan", mixer_kwargs: dict[str, Any] | None = None,
                 activation: str = "gelu", attn_init: str = "default",
                 weight_init: str = "", **kwargs: Any) -> None:
        if attn_init not in ATTN_INITS:
            raise ValueError(f"unknown attn_init {attn_init!r}; use one of {ATTN_INITS}")
        if mixer != "mlp" and activation != "gelu":
            raise ValueError(f"activation={activation!r} applies to mixer='mlp' only; the "
                             f"{mixer!r} mixer carries its own nonlinearity")
        mixer_kwargs = dict(mixer_kwargs or {})
        super().__init__(mlp_layer=partial(build_mixer, mixer, **mixer_kwargs),
                         act_layer=activation_layer(activation), weight_init="skip", **kwargs)
        self.mixer, self.mixer_kwargs = mixer, mixer_kwargs
        self.activation, self.attn_init = activation, attn_init
        self.weight_init_mode = weight_init
        if weight_init != "skip":
            self.init_weights(needs_reset=False)

    def init_weights(self, mode: str = "", needs_reset: bool = True) -> None:
        """timm's ViT init, then the own init of each mixer that has one (``reset_parameters``;
        ``mlp``, ``pau`` and ``swiglu`` keep timm's), then the attention init."""
        super().init_weights(mode, needs_reset)
        for block in self.blocks:
            if hasattr(block.mlp, "reset_parameters"):
                block.mlp.reset_parameters()
        if self.attn_init == "mimetic":
            for block in self.blocks:
                mimetic_init_(block.attn)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
            "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": True,
            "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
            "first_conv": "patch_embed.proj", "classifier": "head", **kwargs}


def _kat(act_init: str) -> dict[str, Any]:
    return {"mixer": "grkan", "mixer_kwargs": {"act_init": act_init, "num_groups": 8},
            "attn_init": "mimetic"}


_PARAMS = {"tiny": "5.7M", "small": "22.1M", "base": "86.6M"}
# name -> (size, constructor defaults, docstring): every model this module registers.
MODELS: dict[str, tuple[str, dict[str, Any], str]] = {}
for _size, _letter in (("tiny", "T"), ("small", "S"), ("base", "B")):
    MODELS[f"kat_{_size}_patch16_224"] = (
        _size, _kat("swish"),
        f"KAT-{_letter}/16: {_PARAMS[_size]} params; identity and Swish rationals (paper default).")
    MODELS[f"kat_{_size}_swish_patch16_224"] = (
        _size, _kat("swish"), f"Same as ``kat_{_size}_patch16_224``.")
    MODELS[f"kat_{_size}_gelu_patch16_224"] = (
        _size, _kat("gelu"),
        f"KAT-{_letter}/16 with the second rational fitted to GELU (ViT->KAT transfer).")
    MODELS[f"vit_{_size}_kan_patch16_224"] = (
        _size, {"mixer": "kan", "mixer_kwargs": {}},
        f"ViT-{_letter}/16 + B-spline KAN mixer (the paper's ViT + KAN row).")

default_cfgs = generate_default_cfgs({name: _cfg() for name in MODELS})


def _create(variant: str, size: str, pretrained: bool, defaults: dict[str, Any],
            kwargs: dict[str, Any]) -> KATVisionTransformer:
    args = {"patch_size": 16, **SIZES[size], **defaults, **kwargs}
    return build_model_with_cfg(KATVisionTransformer, variant, pretrained,
                                pretrained_filter_fn=checkpoint_filter_fn, **args)


def _register(name: str, size: str, defaults: dict[str, Any], doc: str) -> None:
    """Register ``name`` with timm (and as a function of this module)."""
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> KATVisionTransformer:
        return _create(name, size, pretrained, defaults, kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = doc
    globals()[name] = register_model(entrypoint)


for _name, (_size, _defaults, _doc) in MODELS.items():
    _register(_name, _size, _defaults, _doc)


def vit_mixer(mixer: str, *, img_size: int, patch_size: int, num_classes: int, in_chans: int,
              embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
              **kwargs: Any) -> KATVisionTransformer:
    """A ViT of any size with the given mixer (the task builders' entry point)."""
    return KATVisionTransformer(mixer=mixer, img_size=img_size, patch_size=patch_size,
                                num_classes=num_classes, in_chans=in_chans, embed_dim=embed_dim,
                                depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, **kwargs)

