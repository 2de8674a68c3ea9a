#!/usr/bin/env bash
# μ0 v3 (checkpoints/mu0-sim-v3/MODEL_CARD.md): μ0 v2's recipe and data (scripts/pretrain_mu0_v2.sh) plus a
# RelativeKeypointLayer in the shared encoder (--model.relative_layer=true: every keypoint reads the others' offsets
# from it), both learned baselines (waypoint, token-ar) with the same encoder on the identical split, and the
# evaluation report. Data: scripts/mu0_scale_data.sh. Every step resumes. μ0 was first trained as session 41's
# probe (scripts/mu0_v2_variant_probe.sh runs/mu0-v2-relative --model.relative_layer=true, same settings and seed)
# and copied here; token-ar was added in session 42 by rerunning this script.
set -euo pipefail
bash scripts/mu0_scale_data.sh
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf 'data/mu0_scale/%s_%s.hdf5 ' "$t" "$r"; done; done)
mu0sim pretrain --data $DATA --out checkpoints/mu0-sim-v3 --holdout-robot Kinova3 --steps 4000 --workers 2 \
  --models mu0,waypoint,token-ar --model.history_dropout=0.25 --model.flow_prediction=sample --model.num_control=7 \
  --model.relative_layer=true
mu0sim eval-traces --ckpt checkpoints/mu0-sim-v3 --data $DATA --out results/mu0-sim-v3/report.json
