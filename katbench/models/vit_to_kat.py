"""Initialise KAT from a trained ViT (paper section 4.4, Fig. 4; Table 5 rows marked *).

A KAT block's mixer is ``fc2(F_2(fc1(F_1(x))))`` and a ViT block's is ``fc2(GELU(fc1(x)))``:
with ``F_1`` the identity and ``F_2`` the rational fitted to GELU, every ViT weight has a place
in KAT under the same name (``blocks.<i>.mlp.fc1.weight``, ...). :func:`vit_to_kat` copies all
of them (patch and position embeddings resampled by timm when the image size differs), sets the
rationals to those fits, and checks that nothing of the ViT is left over, so the KAT model
computes nearly the ViT's function before any training (the GELU fit's error on [-3, 3] is
about 1e-6 in mean square).

``python -m katbench.models.vit_to_kat <vit checkpoint or timm name> <out.pth>`` writes the
transferred state dict for ``kat_*_gelu_patch16_224``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from katbench.layers import GroupRational
from katbench.models.vit import SIZES, KATVisionTransformer

__all__ = ["RATIONAL_KEYS", "load_vit_state_dict", "vit_to_kat"]

RATIONAL_KEYS = ("act1.numerator", "act1.denominator", "act2.numerator", "act2.denominator")


def load_vit_state_dict(source: str | Path | Mapping[str, torch.Tensor] | nn.Module
                        ) -> dict[str, torch.Tensor]:
    """A ViT state dict from a dict, a module, a checkpoint file or a timm pretrained name.

    Files may hold the state dict itself or under ``model`` / ``state_dict`` (DeiT, timm train
    checkpoints); ``.safetensors`` files are read with safetensors. A string that is not an
    existing file is taken as a timm model name and loaded with ``pretrained=True`` (needs
    network access or timm's local cache).
    """
    if isinstance(source, nn.Module):
        return dict(source.state_dict())
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
        return dict(state)
    import timm

    try:
        return dict(timm.create_model(str(source), pretrained=True).state_dict())
    except Exception as err:  # timm raises several kinds for unknown names / offline hubs
        raise ValueError(f"{source!r} is neither a checkpoint file nor a timm model whose "
                         f"pretrained weights can be loaded ({type(err).__name__}: {err}); pass "
                         "a local .pth/.safetensors file of the ViT") from err


def _size_of(state: Mapping[str, torch.Tensor]) -> str:
    if "cls_token" not in state:
        raise ValueError("the state dict has no cls_token: not a timm ViT state dict")
    width = int(state["cls_token"].shape[-1])
    for size, cfg in SIZES.items():
        if cfg["embed_dim"] == width:
            return size
    raise ValueError(f"ViT width {width} matches none of {sorted(SIZES)}; pass model=... "
                     "(a KATVisionTransformer of that width)")


@torch.no_grad()
def vit_to_kat(source: str | Path | Mapping[str, torch.Tensor] | nn.Module,
               model: KATVisionTransformer | None = None, **kwargs: Any) -> KATVisionTransformer:
    """Return a GR-KAN ViT carrying every weight of the ViT ``source``.

    ``model`` is the KAT to fill (its mixer must be ``grkan``); by default
    ``kat_<size>_gelu_patch16_224`` of the ViT's width and class count, built with ``kwargs``
    (e.g. ``img_size``, ``drop_path_rate``). The rationals are reset to identity (first) and
    the GELU fit (second) whatever the model's ``act_init``. Raises ``ValueError`` listing the
    KAT weights the ViT lacks or the ViT weights KAT has no place for.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = load_vit_state_dict(source)
    if model is None:
        import timm

        import katbench.models.vit  # noqa: F401  (registers kat_*)

        num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
        model = timm.create_model(f"kat_{_size_of(state)}_gelu_patch16_224",
                                  num_classes=num_classes, **kwargs)
    if getattr(model, "mixer", None) != "grkan":
        raise ValueError(f"vit_to_kat fills a KAT (mixer 'grkan'), not mixer "
                         f"{getattr(model, 'mixer', type(model).__name__)!r}")
    state = checkpoint_filter_fn(state, model)
    own = model.state_dict()
    rational = {k for k in own if k.endswith(RATIONAL_KEYS)}
    missing = sorted(set(own) - rational - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or extra or wrong:
        raise ValueError(f"ViT and KAT do not match: KAT weights missing from the ViT "
                         f"{missing[:5]}, ViT weights with no place in KAT {extra[:5]}, shape "
                         f"mismatches {wrong[:5]}; use a ViT of the same size and layout")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    for block in model.blocks:
        for name, function in (("act1", "identity"), ("act2", "gelu")):
            old = getattr(block.mlp, name)
            new = GroupRational(old.num_groups, old.order, function, old.variant,
                                old.shared_numerator)
            setattr(block.mlp, name, new.to(old.numerator))
    return model


def main(argv: list[str] | None = None) -> int:
    """CLI: transfer a ViT checkpoint (or timm pretrained name) and save the KAT state dict."""
    parser = argparse.ArgumentParser(prog="python -m katbench.models.vit_to_kat",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("source", help="ViT checkpoint (.pth/.safetensors) or timm model name")
    parser.add_argument("output", type=Path, help="where to write the KAT state dict (.pth)")
    args = parser.parse_args(argv)
    try:
        model = vit_to_kat(args.source)
    except ValueError as err:
        print(f"katbench.models.vit_to_kat: error: {err}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output)
    print(f"wrote {args.output} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
