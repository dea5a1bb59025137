#!/usr/bin/env bash
# The local worker on a GPU machine (run through the device tool, carry [".whl"]):
# the demo grid queued with two jobs packed per GPU, watched to the end.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TUNEBOARD_HOME=/tmp/tbgpu TUNEBOARD_JOBS_PER_GPU=${JOBS_PER_GPU:-2}
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -m core.cli prepare
python3 -m core.cli worker status
python3 -m core.cli demo-grid /tmp/grid.yaml
start=$(date +%s)
python3 -m core.cli submit /tmp/grid.yaml --watch > /tmp/watch.log 2>&1
echo "grid of 10 jobs took $(( $(date +%s) - start )) s with $TUNEBOARD_JOBS_PER_GPU jobs per GPU"
grep -E "^-- " /tmp/watch.log | tail -3
tail -12 /tmp/watch.log
grep -h "started\|ended" /tmp/tbgpu/worker.log | head -24
python3 -c "
import mlflow; from core.settings import configure_mlflow; configure_mlflow()
print(mlflow.search_runs(search_all_experiments=True)[['tags.mlflow.runName','status','metrics.accuracy','tags.job_slot']].to_string())"
python3 -m core.cli worker stop
