# Probe: the tabular baseline with TabTransformer's per-row LayerNorm over the continuous
# features (model.cont_norm=layer, data.scaling=standard: katbench's recipe until 2026-11-30),
# paper profile on two H200s; the runs the lease allowed (scripts/gpu_queue.sh, 22 at a time).
TABLES=tab_1995_income,tab_bank_marketing,tab_online_shoppers
KB_RESULTS=/tmp/kb/tab bash scripts/gpu_queue.sh start --profile paper --tasks $TABLES --seeds 0,1,2,3,4 --slots 22 --stop-after-s 1260 model.cont_norm=layer data.scaling=standard
python -m katbench.report results/probes/tab_row_layernorm --publish docs/results/probes/tab_row_layernorm
