#!/usr/bin/env bash
# Is the held-out robot's extra trace error about how it looks? μ0 v3's recipe on Lift alone (30 demos of each of
# the six robots, Kinova3 held out; 2,000 steps), trained plain and with the robot rendered in random colours
# (--samples.robot_colors: the chance that a demo's frames paint each of the robot's visual geoms one random colour;
# eval-traces always renders the true colours), training seeds 0 and 1 (RESULTS.md, "Robot colours", session 46).
# Every step resumes or skips what is there. ~55 min on 2 cores (session 46: data 15 min; each μ0 244-312 s of
# training, plus ~3 min the first time a colour setting's sample caches are built and ~1 min for each report).
set -euo pipefail
ROBOTS="Panda Sawyer IIWA UR5e Kinova3 XArm7"
python scripts/scripted_success_rates.py --tasks Lift --robots "${ROBOTS// /,}" --attempts 30 --out-dir data/mu0_colors
for r in $ROBOTS; do echo "data/mu0_colors/Lift_$r.hdf5"; done |
  xargs -P 2 -I{} sh -c 'mu0sim extract {} --mode sim --camera agentview --episodes 30 | tail -1'
files() { for r in $ROBOTS; do printf '%s/Lift_%s.hdf5 ' "$1" "$r"; done; }
# each colour setting reads the same files through links in its own folder, which holds its own sample caches
for p in 0.5 1.0; do
  mkdir -p "data/mu0_colors_$p"
  for f in data/mu0_colors/Lift_*.hdf5; do ln -sf "$PWD/$f" "data/mu0_colors_$p/"; done
done
ARGS="--holdout-robot Kinova3 --steps 2000 --workers 2 --models mu0 --model.history_dropout=0.25
      --model.flow_prediction=sample --model.num_control=7 --model.relative_layer=true"
run() {  # run NAME DATA_DIR SEED [extra pretrain args]
  local name=$1 dir=$2 seed=$3; shift 3
  mu0sim pretrain --data $(files "$dir") --out "runs/mu0_colors/$name" $ARGS --seed "$seed" "$@"
  mu0sim eval-traces --ckpt "runs/mu0_colors/$name" --data $(files data/mu0_colors) \
    --out "runs/mu0_colors/$name/report.json"
}
run plain data/mu0_colors 0
run colors_0.5 data/mu0_colors_0.5 0 --samples.robot_colors=0.5
run colors_1.0 data/mu0_colors_1.0 0 --samples.robot_colors=1.0
run plain_seed1 data/mu0_colors 1
run colors_1.0_seed1 data/mu0_colors_1.0 1 --samples.robot_colors=1.0
# how much of the held-out robot's extra error the keypoints' 8-step history carries: the plain μ0s without it
for name in plain plain_seed1; do
  mu0sim eval-traces --ckpt "runs/mu0_colors/$name" --data $(files data/mu0_colors) --without-history \
    --out "runs/mu0_colors/$name/report_without_history.json"
done
