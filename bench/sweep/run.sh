#!/usr/bin/env bash
# The real sweeps of docs/benchmarks.md ("Choosing a strategy"): calibrate every escalate
# configuration of the grid (escalate, escalate_large, ...) on the dev split, then sweep the
# test split (the ladders included).
# Usage: bench/sweep/run.sh [humaneval|gsm8k] DEV_LIMIT TEST_LIMIT   (from the repository root)
set -euo pipefail
suite=${1:-humaneval}; dev=${2:-15}; test=${3:-20}
F=.venv/bin/forkpath
L="flock /tmp/forkpath-bench.lock"
grid=bench/sweep/$suite-qwen.yaml
calib=bench/results/sweep-$suite-dev
ladders=$(.venv/bin/python -c "import sys, yaml; print(' '.join(n for n, c in yaml.safe_load(open(sys.argv[1]))['configs'].items() if c['strategy'] == 'escalate'))" $grid)
for ladder in $ladders; do
  # 1. every stage on every dev task, then the thresholds reaching the best single stage's accuracy
  $L $F sweep $grid --dataset $suite --split dev --limit $dev --out $calib --calibrate $ladder --target-cost 1e12
  # (the file rounds accuracies to 4 decimals; 5e-5 below is the exact k/n it stands for)
  best=$(.venv/bin/python -c "import json,sys; print(max(json.load(open(sys.argv[1]))['fitted']['stage_accuracy']) - 5e-5)" $calib/$ladder.thresholds.json)
  $L $F sweep $grid --dataset $suite --split dev --limit $dev --out $calib --calibrate $ladder --target-accuracy $best
done
# 2. the test split: every configuration, each ladder with the thresholds fitted on dev
$L $F sweep $grid --dataset $suite --split test --limit $test --out bench/results/sweep-$suite-test
