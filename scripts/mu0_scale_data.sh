#!/usr/bin/env bash
# μ0 v2's pretraining data (checkpoints/mu0-sim-v2/MODEL_CARD.md; first built by session 36's
# scripts/mu0_data_scale_probe.sh): three times the shipped μ0's demos per training robot.
#   data/mu0_scale: copies of data/scripted_success's 24 files and sidecars, the five training robots' files
#   extended to 96 collect attempts (seeds 0-95: the first 34 are checkpoints/mu0-sim's), sim-mode TraceExtract on
#   their first 90 demos (split per file: 63 train, 9 validation, 18 `seen_robots`); Kinova3's stay at 30 (held out).
# Needs data/scripted_success (bash scripts/mu0_pretrain_data.sh). Every step resumes; ~70 min on 2 cores, 5.7 GB.
set -euo pipefail
src=data/scripted_success
data=data/mu0_scale
seen=Panda,Sawyer,IIWA,UR5e,XArm7

mkdir -p "$data"
for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  f="${t}_${r}"
  [ -f "$data/$f.hdf5" ] || { cp "$src/$f.traces-sim.hdf5" "$data/" && cp "$src/$f.hdf5" "$data/"; }
  # Kinova3 is only evaluated, on the same 30 demos: its sample cache carries over
  [ "$r" != Kinova3 ] || [ -f "$data/$f.mu0-samples.hdf5" ] || cp "$src/$f.mu0-samples.hdf5" "$data/"
done; done
python scripts/scripted_success_rates.py --tasks Lift,Stack,PickPlaceCan,Door --robots "$seen" --attempts 96 \
  --out-dir "$data"
for t in Lift Stack PickPlaceCan Door; do for r in ${seen//,/ }; do echo "$data/${t}_${r}.hdf5"; done; done |
  xargs -P 2 -I{} sh -c 'mu0sim extract {} --mode sim --camera agentview --episodes 90 | tail -1'
