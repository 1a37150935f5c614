"""Parameters and FLOPs of a timm model: ``python -m katbench.models.info <name> [...]``.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one image, in the
convention of the paper's numbers (fvcore, as in the official ``tools/calculate_flops.py``):
one multiply-add of a linear layer or convolution is one FLOP, a LayerNorm costs 5 per element,
a group-wise rational 21 per element (Horner, paper appendix H.2), and the attention matrix
products are not counted (fvcore has no rule for fused attention). With these rules ViT-T/16 is
1.08 G and KAT-T/16 1.13 G at 224x224, as in the paper's Table 5. ``total_gflops`` is torch's own
count (2 FLOPs per multiply-add, attention included when the device's attention kernel has a
formula), for reference.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["RATIONAL_FLOPS_PER_ELEMENT", "count_flops", "count_params", "model_info"]

RATIONAL_FLOPS_PER_ELEMENT = 21  # m + n + 1 additions, m + n multiplications, |.|, division
LAYER_NORM_FLOPS_PER_ELEMENT = 5


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not), as the paper's '#Param.'."""
    return sum(p.numel() for p in model.parameters())


def _per_element(flops: int):
    def formula(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return flops * math.prod(x_shape)
    return formula


def _halved(formula: Any):
    def half(*args: Any, **kwargs: Any) -> int:
        return formula(*args, **kwargs) // 2
    half._get_raw = True  # the wrapped registry entries already take raw arguments
    return half


def _paper_mapping() -> dict[Any, Any]:
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    mapping: dict[Any, Any] = {op: _halved(flop_registry[op]) for op in (
        aten.mm, aten.addmm, aten.convolution, aten._convolution)}
    for op in list(flop_registry):
        if "attention" in str(op):
            mapping[op] = _zero
    mapping[aten.bmm] = _zero
    mapping[aten.baddbmm] = _zero
    mapping[aten.native_layer_norm] = _per_element(LAYER_NORM_FLOPS_PER_ELEMENT)
    import katbench.ops  # noqa: F401  (defines katbench::group_rational)

    mapping[torch.ops.katbench.group_rational] = _per_element(RATIONAL_FLOPS_PER_ELEMENT)
    return mapping


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


_zero._get_raw = True


def count_flops(model: torch.nn.Module, input_size: tuple[int, ...] = (3, 224, 224),
                convention: str = "paper") -> int:
    """FLOPs of one forward pass on one ``input_size`` image (eval mode, no grad).

    ``convention="paper"``: the fvcore rules of the module docstring; ``"torch"``:
    FlopCounterMode's defaults (2 per multiply-add).
    """
    if convention not in ("paper", "torch"):
        raise ValueError(f"convention={convention!r}; use 'paper' or 'torch'")
    mapping = _paper_mapping() if convention == "paper" else {}
    param = next(model.parameters())
    x = torch.randn(1, *input_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_info(name: str, img_size: int = 224, device: str = "meta",
               **kwargs: Any) -> dict[str, Any]:
    """``{"model", "params_m", "gflops", "total_gflops"}`` of a timm model (katbench's included).

    The model is built on the ``meta`` device by default: shapes are all that counting needs, so
    even ViT-B takes about a second and no kernel is compiled.
    """
    import timm

    import katbench.models.vit  # noqa: F401  (registers the kat_* / vit_*_kan models)

    with torch.device(device):
        model = timm.create_model(name, img_size=img_size, **kwargs)
    size = (model.patch_embed.proj.in_channels, img_size, img_size)
    return {"model": name, "params_m": count_params(model) / 1e6,
            "gflops": count_flops(model, size, "paper") / 1e9,
            "total_gflops": count_flops(model, size, "torch") / 1e9}


def main(argv: list[str] | None = None) -> int:
    """Print one line per model: parameters (M) and GFLOPs at ``--img-size``."""
    parser = argparse.ArgumentParser(prog="python -m katbench.models.info",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="timm model names, e.g. kat_tiny_patch16_224")
    parser.add_argument("--img-size", type=int, default=224)
    args = parser.parse_args(argv)
    print(f"{'model':32s} {'params (M)':>10s} {'GFLOPs':>8s} {'torch GFLOPs':>13s}")
    for name in args.names:
        try:
            info = model_info(name, args.img_size)
        except RuntimeError as err:
            print(f"katbench.models.info: error: {name}: {str(err).splitlines()[0]}",
                  file=sys.stderr)
            return 2
        print(f"{name:32s} {info['params_m']:10.2f} {info['gflops']:8.2f} "
              f"{info['total_gflops']:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
