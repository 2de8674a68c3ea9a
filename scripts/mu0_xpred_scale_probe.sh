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
  out=runs/mu0takeover
  recipe=(--wrist_points=16 --pooling=per-label --image_feature=false --wrist_features=false --wrist_moments=true
          --grip_clock=true --episodes 10)
  for robot in Panda UR5e; do
    policy="$out/policies/Stack_${robot}_trace-mu0scale90xd7_10demos"
    [ -f "$policy/config.json" ] || mu0sim train-policy --data "data/scripted_success/Stack_$robot.hdf5" --mu0 "$mu0" \
      --variant trace --out "$policy" "${recipe[@]}"
    mu0sim eval --policy "$policy" --mu0 "$mu0" --task Stack --robots "$robot" --episodes 50 --seed-start 2000 \
      --workers 2 --out "$out/eval_${robot}_trace-mu0scale90xd7" | tail -3
  done
  for robot in Panda UR5e; do
    python scripts/forecast_error.py --policy "$out/policies/Stack_${robot}_trace-mu0scale90xd7_10demos" --mu0 "$mu0" \
      --seeds 2000-2019 --demos "data/scripted_success/Stack_$robot.hdf5" --demo-range 30-39 \
      --out "runs/forecast_error/stack_${robot,,}_trace-mu0scale90xd7_10demos.jsonl" | tail -14
  done
fi
