# Probe: the fitting functions with MLP and GR-KAN given the B-spline KAN's parameter budget
# (KAN [2, 5, 1]: 150 parameters; MLP [2, 37, 1] and GR-KAN [2, 32, 1]: 149), 5 seeds, CPU.
FITS=fit_exp_sin_r2,fit_exp_sinpi_y2,fit_exp_j0_y2,fit_xy,fit_x_div_y,fit_sum_prod
R="profile=paper trainer.device=cpu trainer.threads=1 seed=0,1,2,3,4 results_dir=results/probes/fit_equal_params"
python -m katbench.run task=$FITS mixer=mlp "task.widths=[2,37,1]" $R
python -m katbench.run task=$FITS mixer=grkan "task.widths=[2,32,1]" $R
python -m katbench.run task=$FITS mixer=kan $R          # the paper-profile KAN runs, unchanged
python -m katbench.report results/probes/fit_equal_params --publish docs/results/probes/fit_equal_params
