#!/usr/bin/env bash
# The data behind the shipped μ0 checkpoint (checkpoints/mu0-sim/MODEL_CARD.md):
#   1. scripted demos, state only, 100 attempts per task x robot (the RESULTS.md success-rate files);
#   2. sim-mode TraceExtract (agentview) on the first EPISODES demos of each, two files at a time.
# Both steps resume: existing demos and sidecar entries are kept.
set -euo pipefail
EPISODES=${EPISODES:-30}
OUT=${OUT:-data/scripted_success}
TASKS=${TASKS:-Lift,Stack,PickPlaceCan,Door}
ROBOTS=${ROBOTS:-Panda,Sawyer,IIWA,UR5e,Kinova3,XArm7}
python scripts/scripted_success_rates.py --tasks "$TASKS" --robots "$ROBOTS" --out-dir "$OUT"
for task in ${TASKS//,/ }; do for robot in ${ROBOTS//,/ }; do echo "$OUT/${task}_${robot}.hdf5"; done; done |
  xargs -P 2 -I{} sh -c 'mu0sim extract {} --mode sim --camera agentview --episodes '"$EPISODES"' | tail -1'
