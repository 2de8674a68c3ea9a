#!/usr/bin/env bash
# Issue 6's Lift table with noise-injected demos: 50 scripted demos per robot collected with action noise
# (std 0.1) and a 1 cm approach jitter, then the same training and evaluation as scripts/lift_action_experts.sh.
set -euo pipefail
ROBOTS=${ROBOTS:-Panda Sawyer}
VARIANTS=${VARIANTS:-trace no-trace}
for robot in $ROBOTS; do
  data=data/lift_noisy/Lift_${robot}.hdf5
  mu0sim collect --task Lift --robot "$robot" --episodes 50 --out "$data" --noise-std 0.1 --approach-jitter-m 0.01 | tail -1
  policies=()
  for variant in $VARIANTS; do
    out=runs/policies/lift_noisy_${robot}_${variant}
    [ -f "$out/config.json" ] || mu0sim train-policy --data "$data" --mu0 checkpoints/mu0-sim --variant "$variant" \
      --robot "$robot" --out "$out" | tail -1
    policies+=("$out")
  done
  mu0sim eval --policy "${policies[@]}" --task Lift --robots "$robot" --episodes 50 --seed-start 1000 \
    --out "results/lift_noisy_${robot}" | tail -1
  cat "results/lift_noisy_${robot}/results.md"
done
