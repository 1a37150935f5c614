# The digits runs published until 2026-12-06 (paper profile, 2-core CPU), made with the task's
# recipe of then: label smoothing 0.1 only, no Mixup/CutMix, no stochastic depth. Kept as the
# "before" of probes/digits_regularisation. On today's task file the same recipe is:
python -m katbench.run task=digits mixer=mlp,kan,grkan seed=0,1,2 profile=paper trainer.device=cpu \
    trainer.threads=1 results_dir=results/probes/digits_label_smoothing_only \
    data.mixup.mixup=0 data.mixup.cutmix=0 model.drop_path_rate=0
python -m katbench.report results/probes/digits_label_smoothing_only --publish docs/results/probes/digits_label_smoothing_only
