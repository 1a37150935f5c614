# Probe: digits (paper profile) with Mixup 0.8 and stochastic depth 0.1 added to the recipe of
# 2026-12-06 (label smoothing 0.1 only, no drop path), GR-KAN and the MLP, seeds 0-2, on the
# 2-core CPU, one core. The published digits runs before 2026-12-06 (83.0 / 91.4 / 87.7 for
# GR-KAN) memorised the 1437 training images by epoch 20-30; this probe is why tasks/digits.yaml
# now carries the DeiT regularisation (with CutMix 1.0 too). On today's task file the same
# recipe is:
python -m katbench.run task=digits mixer=grkan,mlp seed=0,1,2 profile=paper trainer.device=cpu \
    trainer.threads=1 results_dir=results/probes/digits_regularisation data.mixup.cutmix=0 \
    tracking.enabled=false
python -m katbench.report results/probes/digits_regularisation --publish docs/results/probes/digits_regularisation
