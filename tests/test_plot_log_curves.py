"""scripts/plot_log_curves.py: curves parsed from the trainer's log lines, one PNG written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_log_curves.py"
spec = importlib.util.spec_from_file_location("plot_log_curves", SCRIPT)
plot_log_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_log_curves)


def test_curves_from_log_lines_are_plotted(tmp_path):
    log = tmp_path / "grkan.txt"
    log.write_text("graph_transformer[zinc/grkan]: 590449 parameters\n"
                   "zinc/grkan/s1 epoch 5/1000 train_loss=0.9 lr=0.0007 val_mae=1.5\n"
                   "Traceback-free noise line\n"
                   "zinc/grkan/s1 epoch 10/1000 train_loss=0.7 lr=0.0007 val_mae=0.69\n")
    name, curves = plot_log_curves.read_curves(log)
    assert name == "zinc/grkan/s1"
    assert curves["val_mae"] == [(5, 1.5), (10, 0.69)] and len(curves["lr"]) == 2
    out = tmp_path / "curves.png"
    assert plot_log_curves.main([str(log), "--metrics", "val_mae", "train_loss",
                                 "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
