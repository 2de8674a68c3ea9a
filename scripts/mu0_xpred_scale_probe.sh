#!/usr/bin/env bash
# Session 37's probe for issue 5: the two μ0 levers measured alone, together. x-prediction with D = 7 (session 20:
# the candidate recipe for a next μ0, 1-5% below the waypoint regressor) on three times the pretraining data
# (session 36: both μ0 and the regressor gain ~8%, μ0 stays 9% behind). Does the lead over the regressor grow with
# the data? Needs data/mu0_scale and runs/mu0-scale90 (WAYPOINT=1 bash scripts/mu0_data_scale_probe.sh): the same
# files, split and anchors, and the waypoint regressor trained there on the same data, steps and seed, which is
# copied in so that one eval-traces report scores both.
# Usage: [EXPERTS=1] bash scripts/mu0_xpred_scale_probe.sh
set -euo pipefail
data=data/mu0_scale
mu0=runs/mu0-scale90-xpred-d7
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf '%s/%s_%s.hdf5 ' "$data" "$t" "$r"; done; done)
mu0sim pretrain --data $DATA --out "$mu0" --holdout-robot Kinova3 --steps 4000 --workers 2 --models mu0 \
  --model.history_dropout=0.25 --model.flow_prediction=sample --model.num_control=7
mkdir -p "$mu0/baselines"
[ -d "$mu0/baselines/waypoint" ] || cp -r runs/mu0-scale90/baselines/waypoint "$mu0/baselines/"
mu0sim eval-traces --ckpt "$mu0" --data $DATA --out "$mu0/report.json"
# EXPERTS=1: issue 7's side, as session 36 did for the 3x-data μ0: 10-demo Stack `trace` experts on this μ0 (study
# recipe, demos 0-9 of data/scripted_success, tuning seeds 2000-2049) beside runs/mu0takeover's, and their forecasts.
if [ "${EXPERTS:-0}" = 1 ]; then
  bash scripts/stack_trace_experts_10demos.sh "$mu0" trace-mu0scale90xd7
fi
