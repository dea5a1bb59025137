#!/usr/bin/env bash
# The GPU check, run once on a lent GPU machine (the device tool) from the repo root:
#   carry [".whl"] (made by ../shared/device/wheels.sh); figures and logs land in $OUT.
# Each step runs even if an earlier one failed, so one call tells as much as it can.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sys, torch, transformers, mlflow, datasets; print(sys.version.split()[0], torch.__version__, transformers.__version__, mlflow.__version__, datasets.__version__)" | tee -a "$OUT/gpu.txt"
# DeBERTa-v3-base shape, real-length mix, the design's batch 32 and batch 128 settings
python3 bench/bench_pipeline.py --shape base --examples 4096 --epochs 1 --batch 32 --repeats 2 \
  --json "$OUT/bench_base_b32.json" 2>&1 | grep -vE "Warning|warn\(|super\(\)" | tail -8
python3 bench/bench_pipeline.py --shape base --examples 8192 --epochs 1 --batch 128 --repeats 1 \
  --json "$OUT/bench_base_b128.json" 2>&1 | grep -vE "Warning|warn\(|super\(\)" | tail -5
# the seed's workflow end to end on the GPU (bf16, fused AdamW), real MLflow on SQLite
python3 -m pytest -p no:cacheprovider -q -x tests/test_seed_workflow.py 2>&1 | tail -5 | tee "$OUT/pytest_gpu.txt"
