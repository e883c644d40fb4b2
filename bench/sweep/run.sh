#!/usr/bin/env bash
# The real sweeps of docs/benchmarks.md ("Choosing a strategy"): calibrate escalate on the dev
# split, then sweep the test split (escalate included), for HumanEval and GSM8K.
# Usage: bench/sweep/run.sh [humaneval|gsm8k] DEV_LIMIT TEST_LIMIT   (from the repository root)
set -euo pipefail
suite=${1:-humaneval}; dev=${2:-15}; test=${3:-20}
F=.venv/bin/forkpath
L="flock /tmp/forkpath-bench.lock"
grid=bench/sweep/$suite-qwen.yaml
calib=bench/results/sweep-$suite-dev
# 1. every stage on every dev task, then the thresholds reaching the best single stage's accuracy
$L $F sweep $grid --dataset $suite --split dev --limit $dev --out $calib --calibrate escalate --target-cost 1e12
best=$(.venv/bin/python -c "import json,sys; print(max(json.load(open(sys.argv[1]))['fitted']['stage_accuracy']))" $calib/escalate.thresholds.json)
$L $F sweep $grid --dataset $suite --split dev --limit $dev --out $calib --calibrate escalate --target-accuracy $best
# 2. the test split: every configuration, escalate with the thresholds fitted on dev
$L $F sweep $grid --dataset $suite --split test --limit $test --out bench/results/sweep-$suite-test
