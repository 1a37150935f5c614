"""ViT -> KAT transfer: every ViT weight copied, rationals identity/GELU, outputs close."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from katbench.models.vit import vit_mixer
from katbench.models.vit_to_kat import load_vit_state_dict, main, vit_to_kat

SHAPE = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2,
         "num_classes": 10}


def vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**SHAPE).eval()


def kat(**kwargs):
    return vit_mixer("grkan", in_chans=3, mixer_kwargs={"act_init": "swish"}, **SHAPE, **kwargs)


def test_weights_copied_and_rationals_set():
    source = vit()
    model = vit_to_kat(source, kat())
    state = model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(state[key], value), key
    for block in model.blocks:
        assert (block.mlp.act1.init, block.mlp.act2.init) == ("identity", "gelu")


def test_output_close_to_vit_before_training():
    source = vit()
    model = vit_to_kat(source, kat()).eval()
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        expected, got = source(x), model(x)
    error = (got - expected).norm() / expected.norm()
    assert error < 0.03
    # A KAT left at its own init (swish rational, its own weights) is nowhere near the ViT.
    with torch.no_grad():
        untouched = kat().eval()(x)
    assert (untouched - expected).norm() / expected.norm() > 0.5


def test_file_source_and_cli(tmp_path, capsys):
    path = tmp_path / "vit.pth"
    torch.save({"model": vit().state_dict()}, path)
    assert set(load_vit_state_dict(path)) == set(vit().state_dict())
    with pytest.raises(ValueError, match="widths|matches none"):
        vit_to_kat(path)  # width 64 is no registered KAT size
    assert main([str(path), str(tmp_path / "kat.pth")]) == 2
    assert "matches none" in capsys.readouterr().err


def test_mismatch_is_reported():
    state = vit().state_dict()
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape mismatches"):
        vit_to_kat(state, kat())
    with pytest.raises(ValueError, match="fills a KAT"):
        vit_to_kat(vit(), vit_mixer("mlp", in_chans=3, **SHAPE))
