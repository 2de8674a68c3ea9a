#!/usr/bin/env bash
# The shipped μ0 checkpoint (checkpoints/mu0-sim/MODEL_CARD.md): pretraining and its evaluation report.
# Data: scripts/mu0_pretrain_data.sh (Kinova3 is extracted too, but only evaluated: it is the held-out robot).
set -euo pipefail
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf 'data/scripted_success/%s_%s.hdf5 ' "$t" "$r"; done; done)
mu0sim pretrain --data $DATA --out checkpoints/mu0-sim --holdout-robot Kinova3 --steps 4000 --workers 2 \
  --model.history_dropout=0.25
mu0sim eval-traces --ckpt checkpoints/mu0-sim --data $DATA --out results/mu0-sim/report.json
