# How the published runs were made (paper profile; the commit of each run is in runs.csv).
# CPU families and the three small tables, one core per process, each process sweeping tasks and seeds of one mixer
# (2-core AMD EPYC machine; `snakemake --cores all --config profile=paper tasks=<tasks>` runs
# the same configurations one job per run):
FITS=fit_exp_sin_r2,fit_exp_sinpi_y2,fit_exp_j0_y2,fit_xy,fit_x_div_y,fit_sum_prod
R="profile=paper trainer.device=cpu trainer.threads=1 resume=true results_dir=results"
python -m katbench.run task=$FITS mixer=mlp,kan,grkan seed=0,1,2,3,4 $R
python -m katbench.run task=digits mixer=mlp,kan,grkan seed=0,1,2 $R
python -m katbench.run task=pinn_oscillator mixer=mlp,kan,grkan seed=0,1,2,3,4 $R
python -m katbench.run task=tab_qsar_bio,tab_spambase,tab_jasmine mixer=mlp,grkan,kan seed=0,1,2,3,4 $R
# GPU families on a lent machine with two H200s, many runs per GPU, in 10-minute calls
# (docs/running.md, "Many runs on one GPU machine"); the run folders are packed, brought back
# and unpacked into results/, their queued MLflow data sent to results/mlflow.db:
TABLES=tab_1995_income,tab_bank_marketing,tab_online_shoppers,tab_shrutime,tab_blastchar,tab_spambase,tab_jasmine,tab_qsar_bio
bash scripts/gpu_queue.sh prepare --profile paper --tasks pattern,cluster
KB_RESULTS=/tmp/kb/tab bash scripts/gpu_queue.sh start --profile paper --tasks $TABLES --seeds 0,1,2,3,4 --slots 22 --stop-after-s 1260
bash scripts/gpu_queue.sh start --profile paper --tasks pattern,cluster --seeds 0,1,2,3 --slots 8 --stop-after-s 840 trainer.device=cuda
bash scripts/gpu_queue.sh pack OUT --checkpoints     # then: cat OUT/runs.tgz.part* | tar xz -C results
python -m katbench.tracking sync results
# 2026-12-01, one H200 (16 cores): the five larger tables, two queues side by side
# (docs/measurements/h200-2026-12-01-paper/); then on the 2-core CPU the tables the lease did not reach:
T=tab_1995_income,tab_bank_marketing,tab_online_shoppers,tab_shrutime,tab_blastchar
bash scripts/gpu_queue.sh start --profile paper --tasks $T --mixers mlp,grkan --seeds 0,1,2,3,4 --slots 11 --stop-after-s 1330
bash scripts/gpu_queue.sh start --profile paper --tasks $T --mixers kan --seeds 0,1,2,3,4 --slots 5 --stop-after-s 1325
python -m katbench.run task=tab_shrutime mixer=mlp,grkan seed=0,1,2,3,4 $R
# 2026-12-01 (evening), one H200: three queues side by side for 400 s (docs/measurements/h200-2026-12-01c/);
# online_shoppers kan stopped at epoch 83-86 of 100 and was not brought back:
KB_RESULTS=/tmp/kb/tab1 bash scripts/gpu_queue.sh start --profile paper --tasks tab_online_shoppers --mixers mlp,grkan --seeds 1,2,3,4 --slots 8 --stop-after-s 400
KB_RESULTS=/tmp/kb/tab2 bash scripts/gpu_queue.sh start --profile paper --tasks tab_online_shoppers --mixers kan --seeds 0,1,2,3,4 --slots 5 --stop-after-s 400
KB_RESULTS=/tmp/kb/tab3 bash scripts/gpu_queue.sh start --profile paper --tasks tab_blastchar --mixers mlp,grkan --seeds 0,1,2,3,4 --slots 10 --stop-after-s 400
# then on the 2-core CPU, two processes side by side (40-55 s per epoch, about 65 min per run):
python -m katbench.run task=tab_online_shoppers mixer=kan seed=0 $R
python -m katbench.run task=tab_online_shoppers mixer=kan seed=3 $R
# 2026-12-06, one H100 (16 cores), three 400-530 s calls on the same machine (docs/measurements/h100-2026-12-06-paper/);
# bank_marketing and 1995_income kan reached epoch 9-10 of 100 in the first call (about 45 s per epoch with
# 25 processes sharing the machine) and were dropped; digits after tasks/digits.yaml took the DeiT regularisation
# (probes/digits_regularisation):
O="trainer.device=cuda tracking.enabled=false"
KB_RESULTS=/tmp/kb/tab bash scripts/gpu_queue.sh start --profile paper --tasks tab_bank_marketing,tab_1995_income,tab_online_shoppers --mixers grkan,mlp --seeds 0,1,2,3,4 --slots 22 --stop-after-s 490 $O
KB_RESULTS=/tmp/kb/tab bash scripts/gpu_queue.sh start --profile paper --tasks tab_online_shoppers --mixers kan --seeds 1,2,4 --slots 3 --stop-after-s 490 $O
KB_RESULTS=/tmp/kb/dig bash scripts/gpu_queue.sh start --profile paper --tasks digits --mixers kan,grkan,mlp --seeds 0,1,2 --slots 3 --stop-after-s 490 $O
# 2026-12-07, one H100 (16 cores), one 555 s call (docs/measurements/h100-2026-12-07/): the B-spline kan
# TabTransformer on bank_marketing and 1995_income, 10 processes, torch.compile with CUDA graphs
# (4.1-4.5 s per epoch, 508-522 s of training per run; the mlp/grkan runs of these tables ran eager):
TAB_MODE=reduce-overhead bash scripts/paper_device_runs.sh tab 0
bash scripts/paper_device_runs.sh finish 200   # then: cat OUT/tab/runs.tgz.part* | tar xz -C results
# 2026-12-07: the micro-ZINC stand-in (never set beside the paper's ZINC MAE) with the graph recipe of the original
# (plateau on the validation loss, PE sign flips per batch), the paper model on the 2-core CPU, two processes side by side:
python -m katbench.run task=zinc mixer=mlp,grkan seed=0,1,2 task.dataset=micro_zinc $R
python -m katbench.run task=zinc mixer=kan seed=0,1,2 task.dataset=micro_zinc $R
# 2026-12-07 (two H100 leases, docs/measurements/h100-2026-12-07c-graph/ and h100-2026-12-07d-graph/): PATTERN
# with the original's graph recipe, mlp/kan/grkan seeds 0 and 1, under CUDA MPS, stopped with checkpoints at the
# end of the first lease and resumed in the second (RESUME= unpacks the first lease's finish output):
GRAPH_TASKS=pattern GRAPH_SEEDS=0,1 bash scripts/paper_device_runs.sh graph 0
bash scripts/paper_device_runs.sh finish 375                # then, next lease, its OUT/graph* under .devrun/resume/:
RESUME=.devrun/resume GRAPH_TASKS=pattern GRAPH_SEEDS=0,1 bash scripts/paper_device_runs.sh graph 0
bash scripts/paper_device_runs.sh finish 340   # then, per queue q: cat OUT/$q/runs.tgz.part* | tar xz -C results
# 2026-12-07 (fourth lease, one H100, docs/measurements/h100-2026-12-07e-graph/): PATTERN seed 2 started over (the
# previous lease's checkpoints were lost with a session's scratch space); grkan finished, mlp and kan stopped with
# checkpoints, whose pack is committed in unfinished/graph/ for the next lease (RESUME=unfinished):
GRAPH_TASKS=pattern GRAPH_SEEDS=2 bash scripts/paper_device_runs.sh graph 474
bash scripts/paper_device_runs.sh finish 430   # then: cat OUT/graph/runs.tgz.part* | tar xz -C results (finished runs)
# 2026-12-07 (fifth lease, one H100, docs/measurements/h100-2026-12-07f/): PATTERN seed 2's mlp and kan continued
# from their checkpoints in unfinished/graph/ (the working tree travels to the device) and finished:
RESUME=unfinished GRAPH_TASKS=pattern GRAPH_SEEDS=2 bash scripts/paper_device_runs.sh graph 0
bash scripts/paper_device_runs.sh finish 420   # then: cat OUT/graph/runs.tgz.part* | tar xz -C results (finished runs)
# 2026-12-07 (sixth lease, one H100, docs/measurements/h100-2026-12-07g/): PATTERN seed 3 (mlp and grkan finished;
# kan stopped at epoch 134, its checkpoint lost because `finish` ran out of the call's time before packing that
# queue) and CLUSTER seeds 0 (finished) and 1 (stopped with checkpoints: unfinished/cluster/), six runs at once:
GRAPH_TASKS=pattern GRAPH_SEEDS=3 bash scripts/paper_device_runs.sh graph 0
QUEUE=cluster SLOTS=3 GRAPH_TASKS=cluster GRAPH_SEEDS=0,1 bash scripts/paper_device_runs.sh more 0
bash scripts/paper_device_runs.sh watch 555
bash scripts/paper_device_runs.sh finish 430   # then: cat OUT/<queue>/runs.tgz.part* | tar xz -C <dir> (finished runs)
# Lease h100-2026-12-07h (one H100): CLUSTER seed 1 continued from unfinished/cluster/ and finished; CLUSTER seed 2
# and PATTERN kan seed 3 started (stopped with checkpoints: unfinished/cluster23/, unfinished/pattern3/):
RESUME=unfinished bash scripts/paper_device_runs.sh resume 0
QUEUE=pattern3 GRAPH_TASKS=pattern GRAPH_MIXERS=kan GRAPH_SEEDS=3 bash scripts/paper_device_runs.sh more 0
QUEUE=cluster23 SLOTS=3 GRAPH_TASKS=cluster GRAPH_SEEDS=2,3 bash scripts/paper_device_runs.sh more 0
bash scripts/paper_device_runs.sh watch 550
bash scripts/paper_device_runs.sh finish 135   # then: cat OUT/<queue>/runs.tgz.part* | tar xz -C <dir> (finished runs)
# Learning curves of runs made before runs kept history.jsonl come from their MLflow metrics.
# Publish (every run of the benchmark named, so that unfinished ones are listed as missing):
python -m katbench.report results --publish docs/results $(cat docs/results/expected_runs.txt)
