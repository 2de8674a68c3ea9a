#!/usr/bin/env bash
# μ0 v2's recipe and data (scripts/pretrain_mu0_v2.sh: x-prediction, D = 7, three times the demos) with extra
# --model.* settings, then its eval-traces report (the same anchors as results/mu0-sim-v2/report.json; compare the
# by_category rows). Needs data/mu0_scale (scripts/mu0_scale_data.sh). Session 41's two:
#   bash scripts/mu0_v2_variant_probe.sh runs/mu0-v2-grip4 '--model.category_loss_weights={"gripper": 4, "contact": 2}'
#   bash scripts/mu0_v2_variant_probe.sh runs/mu0-v2-relative --model.relative_layer=true
# The forecast follower on them: configs/tuning/forecast_only_10demos_mu0v2_{grip4,relative}.yaml.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR --model.SETTING=VALUE [...]" >&2; exit 2; }
mu0=$1; shift
data=data/mu0_scale
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf '%s/%s_%s.hdf5 ' "$data" "$t" "$r"; done; done)
mu0sim pretrain --data $DATA --out "$mu0" --holdout-robot Kinova3 --steps 4000 --workers 2 --models mu0 \
  --model.history_dropout=0.25 --model.flow_prediction=sample --model.num_control=7 "$@"
mu0sim eval-traces --ckpt "$mu0" --data $DATA --out "$mu0/report.json"
