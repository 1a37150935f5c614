"""Training and inference throughput (images/s) of timm models on random tensors.

THROUGHPUT ONLY: inputs are random ``(B, 3, H, W)`` tensors and random labels, so the numbers
say how fast a model runs on a device, nothing about accuracy. A training step is forward,
cross-entropy, backward and an AdamW step (bf16 autocast on CUDA); an inference step is a
forward under ``torch.inference_mode``. Each measurement runs ``warmup`` untimed steps (kernel
builds, cuDNN/compile autotuning), then times ``steps`` steps with device synchronisation.
Models are measured one after another in one process, so compare them as ratios on one device
(``python -m katbench.models.throughput vit_tiny_patch16_224 kat_tiny_patch16_224``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["measure_throughput", "throughput_table"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(model: torch.nn.Module, *, train: bool, batch_size: int = 128,
                       img_size: int = 224, steps: int = 20, warmup: int = 5,
                       device: str | torch.device = "cuda", amp: bool = True,
                       compile: bool = False) -> dict[str, Any]:
    """Images per second of ``model`` for training or inference steps on random tensors.

    Returns ``{"images_per_s", "step_ms", "peak_memory_mb", "batch_size", "img_size",
    "mode", "device", "amp", "compile"}``; ``peak_memory_mb`` is CUDA's allocator peak (None on
    CPU). ``amp`` is bf16 autocast and applies on CUDA only.
    """
    device = torch.device(device)
    model = model.to(device)
    model.train(train)
    step_model = torch.compile(model) if compile else model
    num_classes = int(getattr(model, "num_classes", 1000)) or 1000
    in_chans = int(model.patch_embed.proj.in_channels) if hasattr(model, "patch_embed") else 3
    x = torch.randn(batch_size, in_chans, img_size, img_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    use_amp = amp and device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            if not train:
                with torch.inference_mode():
                    step_model(x)
                return
            loss = F.cross_entropy(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"images_per_s": steps * batch_size / elapsed, "step_ms": 1e3 * elapsed / steps,
            "peak_memory_mb": peak, "batch_size": batch_size, "img_size": img_size,
            "mode": "train" if train else "inference", "device": str(device),
            "amp": use_amp, "compile": compile}


def throughput_table(names: list[str], **kwargs: Any) -> list[dict[str, Any]]:
    """One row per model and mode (train, inference), with the ratio to the first model."""
    import timm

    import katbench.models  # noqa: F401  (registers kat_* / vit_*_kan)

    rows = []
    for name in names:
        torch.manual_seed(0)
        model = timm.create_model(name, img_size=kwargs.get("img_size", 224))
        for train in (True, False):
            rows.append({"model": name, **measure_throughput(model, train=train, **kwargs)})
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for row in rows:
        first = next(r for r in rows if r["mode"] == row["mode"])
        row["ratio_to_first"] = row["images_per_s"] / first["images_per_s"]
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the throughput table (and write it as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m katbench.models.throughput",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="timm model names; the first is the baseline")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = throughput_table(args.names, batch_size=args.batch_size, img_size=args.img_size,
                            steps=args.steps, warmup=args.warmup, device=args.device,
                            amp=not args.no_amp, compile=args.compile)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"THROUGHPUT ONLY (random tensors), device: {device}, batch {args.batch_size}, "
          f"{args.img_size}px, amp={not args.no_amp}, compile={args.compile}")
    print(f"{'model':30s} {'mode':10s} {'images/s':>10s} {'ratio':>6s} {'peak MB':>8s}")
    for r in rows:
        peak = f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] is not None else "-"
        print(f"{r['model']:30s} {r['mode']:10s} {r['images_per_s']:10.1f} "
              f"{r['ratio_to_first']:6.3f} {peak:>8s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
