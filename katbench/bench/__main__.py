"""Command line of the benchmarks: ``python -m katbench.bench op|block|model``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from katbench.bench.block import WIDTHS, run_block_benchmark
from katbench.bench.model import MODES, format_table, throughput_table
from katbench.bench.op import DTYPES, IMPLS, ratios, run_op_benchmark, write_outputs
from katbench.bench.timing import device_name
from katbench.bench.tune import DEFAULT_VARIANTS, run_tuning, time_variant
from katbench.mixers import DEFAULT_RECOMPUTE, MIXERS, RECOMPUTE
from katbench.ops import kernel_backend


def _default_device() -> str:
    """``cuda`` where a CUDA device is available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog="python -m katbench.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_op, _add_block, _add_model, _add_tune):
        add(sub)
    return parser


def _add_op(sub: argparse._SubParsersAction) -> None:
    """``bench op``: the op against its baselines, a headline shape and a sweep."""
    op = sub.add_parser("op", help="time the group_rational op against baselines")
    op.add_argument("--device", default=_default_device())
    op.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                    help="default: float32 on CPU; float32 bfloat16 float16 on CUDA")
    op.add_argument("--shape", type=int, nargs="+", default=None,
                    help="leading dims of x (default 16 256 on CPU, 64 1000 on CUDA)")
    op.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    op.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    op.add_argument("--headline", type=int, nargs=2, default=[8, 512], metavar=("G", "D"))
    op.add_argument("--sweep-compiled", action="store_true",
                    help="also torch.compile every sweep shape (default on CUDA only)")
    op.add_argument("--no-sweep", action="store_true", help="time the headline shape only")
    op.add_argument("--sweep-dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                    help="dtypes of the groups/widths sweep (default: the first of --dtypes)")
    op.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS),
                    help="implementations at the headline shape (default: all)")
    op.add_argument("--min-run-time", type=float, default=0.3, help="seconds per measurement")
    op.add_argument("--variant", default="sum_abs", choices=["sum_abs", "abs_sum"])
    op.add_argument("--out", type=Path, default=Path("results/bench"))


def _add_block(sub: argparse._SubParsersAction) -> None:
    """``bench block``: every mixer's block against the GELU MLP block."""
    block = sub.add_parser("block", help="every mixer's block against the GELU MLP block at "
                           "ViT-T/S/B widths")
    block.add_argument("--device", default=_default_device())
    block.add_argument("--sizes", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    block.add_argument("--tokens", type=int, nargs=2, default=None,
                       help="batch and sequence length (default 128 197 on CUDA, 8 197 on CPU)")
    block.add_argument("--min-run-time", type=float, default=0.5)
    block.add_argument("--mixers", nargs="+", default=list(MIXERS), choices=list(MIXERS),
                       help="mixers to time (default: every registered one; mlp always runs)")
    block.add_argument("--recompute", default=DEFAULT_RECOMPUTE, choices=list(RECOMPUTE),
                       help="which rationals' outputs the grkan blocks recompute in the "
                       "backward instead of keeping (GRKANMixer's recompute)")


def _add_model(sub: argparse._SubParsersAction) -> None:
    """``bench model``: images/s of timm models, interleaved rounds."""
    model = sub.add_parser("model", help="training/inference images/s of timm models "
                           "(random tensors: throughput only)")
    model.add_argument("names", nargs="+",
                       help="timm model names; the first is the baseline; a [triton] or "
                            "[reference] suffix (kat_tiny_patch16_224[triton]) runs that "
                            "model's GR-KAN op on that backend")
    model.add_argument("--device", default=_default_device())
    model.add_argument("--batch-size", type=int, nargs="+", default=[128, 256],
                       help="batch sizes, each measured in every mode")
    model.add_argument("--img-size", type=int, default=224)
    model.add_argument("--steps", type=int, default=20)
    model.add_argument("--warmup", type=int, default=5)
    model.add_argument("--rounds", type=int, default=5,
                       help="interleaved rounds over the models; rows keep the median and the "
                            "range of the per-round ratio")
    model.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    model.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=list(MODES),
                       help="eager steps, torch.compile'd steps, or one CUDA graph replayed "
                            "(no host overhead)")
    model.add_argument("--json", type=Path, help="also write the rows to this JSON file")


def _add_tune(sub: argparse._SubParsersAction) -> None:
    """``bench tune``: CUDA launch settings, each a rebuild of the kernels."""
    tune = sub.add_parser("tune", help="compare CUDA launch settings (rebuilds the kernels)")
    tune.add_argument("variants", nargs="*", default=list(DEFAULT_VARIANTS),
                      help='overrides such as "BLOCKS_PER_SM=8 MIN_BLOCKS=2"; "" is the default')
    tune.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                      choices=sorted(DTYPES))
    tune.add_argument("--min-run-time", type=float, default=0.2)
    tune.add_argument("--build-root", type=Path,
                      default=Path.home() / ".cache" / "katbench" / "tune")
    tune.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark; 0 on success (argparse exits with 2 on bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "tune":
        if not torch.cuda.is_available():
            parser.error("tune measures the CUDA kernels: no CUDA device is available")
        _tune(args)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but no CUDA device is available")
    {"model": _model, "block": _block, "op": _op}[args.command](args, device)
    return 0


def _tune(args: argparse.Namespace) -> None:
    """``tune``: build and time each launch-setting variant (or, as a worker, time one)."""
    if args.worker:
        print(json.dumps(time_variant(args.dtypes, args.min_run_time)))
        return
    print(f"device: {device_name(torch.device('cuda'))}; building {len(args.variants)} "
          f"variants under {args.build_root}", flush=True)
    run_tuning(args.variants, args.dtypes, args.min_run_time, args.build_root)


def _model(args: argparse.Namespace, device: torch.device) -> None:
    """``model``: images/s of timm models in interleaved rounds, as ratios to the first."""
    rows = throughput_table(args.names, batch_sizes=args.batch_size, img_size=args.img_size,
                            steps=args.steps, warmup=args.warmup, device=device,
                            amp=not args.no_amp, modes=args.modes, rounds=args.rounds)
    print(f"THROUGHPUT ONLY (random tensors), device: {device_name(device)}, "
          f"{args.img_size}px, bf16 autocast={not args.no_amp and device.type == 'cuda'}, "
          f"{args.steps} steps per round, {args.rounds} interleaved rounds; "
          f"ratio: median of the per-round ratios to "
          f"{args.names[0]}, range: lowest-highest round")
    print("\n".join(format_table(rows)))
    if args.json:
        args.json.write_text(json.dumps({"device": device_name(device), "rows": rows},
                                        indent=1))


def _block(args: argparse.Namespace, device: torch.device) -> None:
    """``block``: every mixer's block against the GELU MLP block."""
    on_cuda = device.type == "cuda"
    tokens = tuple(args.tokens or ((128, 197) if on_cuda else (8, 197)))
    print(f"device: {device_name(device)}, tokens {tokens}, "
          f"{'bf16 autocast' if on_cuda else 'float32'}, forward+backward"
          f", grkan with recompute={args.recompute}")
    run_block_benchmark(device, args.sizes, tokens, args.min_run_time, args.recompute,
                        tuple(args.mixers))


def _op(args: argparse.Namespace, device: torch.device) -> None:
    """``op``: the op against its baselines at the headline shape, the groups/widths sweep
    (Figures 6/7) and Table 7, written as CSV and PNG."""
    on_cuda = device.type == "cuda"
    dtypes = args.dtypes or (["float32", "bfloat16", "float16"] if on_cuda else ["float32"])
    leading = tuple(args.shape or ((64, 1000) if on_cuda else (16, 256)))
    headline = (args.headline[0], args.headline[1])
    sweep = ["ours", "vectorised", "looped", "gelu"]  # Figures 6/7
    if on_cuda or args.sweep_compiled:
        sweep.insert(2, "compiled")
    if on_cuda:
        sweep.insert(1, "triton")
    sweep = [name for name in sweep if name in args.impls]
    print(f"device: {device_name(device)} "
          f"(kernel backend: {kernel_backend(device.type)}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, x = {leading} + (D,), variant {args.variant}")
    rows = run_op_benchmark(device, dtypes, args.impls, sweep, leading,
                            [] if args.no_sweep else args.groups,
                            [] if args.no_sweep else args.widths, headline, args.min_run_time,
                            args.variant, args.sweep_dtypes)
    print("\n".join(ratios(rows, headline)))
    written = write_outputs(rows, args.out, f"op_{device_name(device).replace(' ', '_')}",
                            headline)
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main())
