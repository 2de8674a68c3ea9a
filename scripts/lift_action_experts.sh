#!/usr/bin/env bash
# Issue 6's Lift table: action experts behaviour-cloned from 50 scripted demos per robot (seeds 0-49) on the shipped
# μ0's traces, evaluated closed loop on 50 episodes with seeds 1000-1049. Every variant sees the same inputs
# (proprioception, query points, the backbone's agentview and wrist features) except where its traces come from:
# trace (frozen μ0), trace-2d (μ0, image plane only), no-trace (none), gt-trace (oracle), action-pretrained (none;
# first trained on the other five robots' 50 Lift demos each, then fine-tuned on this robot's).
set -euo pipefail
ROBOTS=${ROBOTS:-Panda Sawyer}
VARIANTS=${VARIANTS:-trace no-trace trace-2d gt-trace action-pretrained}
MU0=${MU0:-checkpoints/mu0-sim}
DATA=${DATA:-data/scripted_success}
OUT=${OUT:-results/lift_action_experts}
RUNS=${RUNS:-runs/policies/lift}
ALL_ROBOTS="Panda Sawyer IIWA UR5e Kinova3 XArm7"
for robot in $ROBOTS; do
  policies=()
  for variant in $VARIANTS; do
    out=$RUNS/${robot}_${variant}
    extra=()
    if [ "$variant" = action-pretrained ]; then
      others=(); for r in $ALL_ROBOTS; do [ "$r" = "$robot" ] || others+=("$DATA/Lift_$r.hdf5"); done
      extra=(--pretrain-data "${others[@]}")
    fi
    [ -f "$out/config.json" ] || mu0sim train-policy --data "$DATA/Lift_$robot.hdf5" --episodes 50 --mu0 "$MU0" \
      --variant "$variant" --robot "$robot" --out "$out" "${extra[@]}" | tail -1
    policies+=("$out")
  done
  mu0sim eval --policy "${policies[@]}" --task Lift --robots "$robot" --episodes 50 --seed-start 1000 \
    --out "$OUT" --videos 1 | tail -1
done
cat "$OUT/results.md"
