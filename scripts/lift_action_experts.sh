#!/usr/bin/env bash
# Issue 6's Lift table: action experts behaviour-cloned from 50 scripted demos per robot on the shipped μ0's traces,
# evaluated closed loop on 50 episodes with seeds 1000-1049 (the demos used seeds 0-49).
set -euo pipefail
ROBOTS=${ROBOTS:-Panda Sawyer}
VARIANTS=${VARIANTS:-trace no-trace trace-2d}
MU0=${MU0:-checkpoints/mu0-sim}
for robot in $ROBOTS; do
  policies=()
  for variant in $VARIANTS; do
    out=runs/policies/lift_${robot}_${variant}
    [ -f "$out/config.json" ] || mu0sim train-policy --data data/scripted_success/Lift_${robot}.hdf5 --episodes 50 \
      --mu0 "$MU0" --variant "$variant" --robot "$robot" --out "$out" | tail -1
    policies+=("$out")
  done
  mu0sim eval --policy "${policies[@]}" --task Lift --robots "$robot" --episodes 50 --seed-start 1000 \
    --out results/lift_action_experts | tail -1
done
cat results/lift_action_experts/results.md
