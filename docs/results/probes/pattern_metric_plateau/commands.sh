# PATTERN with katbench's graph recipe until 2026-12-07: ReduceLROnPlateau on the validation
# metric (not the original's validation loss) and Laplacian PE signs flipped per graph (not per
# batch). One H100 under CUDA MPS, 6-9 processes side by side (docs/measurements/h100-2026-12-07c-graph/):
# mlp s0/s1 and grkan s0 finished in the first session; kan s0/s1 and grkan s1 were stopped near
# the end, brought back with their checkpoints and resumed in the next (RESUME=). On today's code
# the same recipe is:
GRAPH_EXTRA="trainer.plateau_on=metric task.pe_sign_flip=graph" MPS=1 GRAPH_TASKS=pattern \
    GRAPH_SEEDS=0,1 bash scripts/paper_device_runs.sh graph 420
bash scripts/paper_device_runs.sh finish 500   # then: cat OUT/*/runs.tgz.part* | tar xz -C results/probes/pattern_metric_plateau
python -m katbench.report results/probes/pattern_metric_plateau --publish docs/results/probes/pattern_metric_plateau \
    pattern/mlp/seed0 pattern/mlp/seed1 pattern/kan/seed0 pattern/kan/seed1 pattern/grkan/seed0 pattern/grkan/seed1
