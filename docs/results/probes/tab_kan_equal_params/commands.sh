# Probe: the B-spline KAN TabTransformer at the MLP's parameter count (param_budget=mlp), on the two
# tables where the paper-profile KAN beat the MLP significantly with ~10x its parameters
# (blastchar: 28.6M against 2.89M; shrutime: 1.14M against 139k). 5 folds, CPU, one core per process.
R="profile=paper trainer.device=cpu trainer.threads=1 resume=true results_dir=results/probes/tab_kan_equal_params param_budget=mlp"
python -m katbench.run task=tab_blastchar mixer=kan seed=0,1,2 $R
python -m katbench.run task=tab_shrutime mixer=kan seed=0,1,2,3,4 $R && python -m katbench.run task=tab_blastchar mixer=kan seed=3,4 $R
# the paper-profile MLP runs beside them, unchanged (docs/results/runs/tab_{blastchar,shrutime}/mlp)
for t in tab_blastchar tab_shrutime; do mkdir -p results/probes/tab_kan_equal_params/runs/$t; cp -r docs/results/runs/$t/mlp results/probes/tab_kan_equal_params/runs/$t/; done
python -m katbench.report results/probes/tab_kan_equal_params --publish docs/results/probes/tab_kan_equal_params
