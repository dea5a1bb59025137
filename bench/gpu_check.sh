#!/usr/bin/env bash
# The GPU check, run once on a lent GPU machine (the device tool) from the repo root, in about 7 minutes:
#   carry [".whl"] (made by ../shared/device/wheels.sh, plus the v3 tokenizer's two, which the GPU image lacks:
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl sentencepiece==0.2.3 protobuf==7.36.2);
#   figures and logs land in $OUT (8 files at most).
# Each step has a time limit and runs even if an earlier one failed; every JSON is rewritten as soon as a
# figure is known, so a step cut off by its limit still leaves what it measured. STEPS picks the steps
# (default "b32 b128 grid"; all: "b32 b128 grid ro32 score").
#   $OUT/gpu.txt          card, driver, versions
#   $OUT/b32.json         bench_pipeline, DeBERTa-v3-base shape, batch 32: plain Trainer (2 seeds) vs the pipeline
#                         eager (TUNEBOARD_COMPILE=off, buckets off), compiled (default mode, 64-token buckets),
#                         then compiled with CUDA graphs (reduce-overhead) if time allows ($B32_VARIANTS)
#   $OUT/b128.json        the same at batch 128, compiled (variants: $B128_VARIANTS)
#   $OUT/grid.json        bench_grid: 8 runs through the queue and worker vs a plain script, one after another
#   $OUT/ro32.json        CUDA graphs alone at batch 32 (reduce-overhead, static bucket shapes), 8,192 examples
#   $OUT/score.json       bench_score: scoring a 20,000-call file and tagging 2,000 calls' topics on the GPU
#   $OUT/logs/*.log       each step's output;  $OUT/summary.txt  the figures that matter, also printed at the end
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OUT=${OUT:-/tmp/out}
# one inductor cache for every process: a graph compiled once is loaded, not compiled, by the next process
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
B32_VARIANTS=${B32_VARIANTS:-off,default,reduce-overhead}
B128_VARIANTS=${B128_VARIANTS:-default}
STEPS=" ${STEPS:-b32 b128 grid} "
mkdir -p "$OUT/logs"
t0=$(date +%s)
step() {  # NAME LIMIT_S COMMAND...: run it within LIMIT_S, its output to logs/NAME.log; never stops the script
  local name=$1 limit=$2; shift 2
  case "$STEPS" in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name (limit ${limit} s; started at +$(( $(date +%s) - t0 )) s)"
  timeout -k 10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  echo "   exit $? at +$(( $(date +%s) - t0 )) s"
  grep -vE "Warning|warn\(|super\(\)|^\{'|Loading weights|Writing model" "$OUT/logs/$name.log" | tail -3 | cut -c1-400
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, torch, transformers, mlflow, datasets; print(sys.version.split()[0], torch.__version__,
transformers.__version__, mlflow.__version__, datasets.__version__)"
  echo "nproc $(nproc); MPS: $(command -v nvidia-cuda-mps-control || echo absent)"; } 2>&1 | tee "$OUT/gpu.txt"
# per run, batch 32: about 20 s set-up, 2 x 12 s plain, 15 s eager, compiled 60-120 s cold, CUDA graphs the rest
step b32 190 python3 bench/bench_pipeline.py --shape base --examples 2048 --epochs 1 --batch 32 --repeats 1 \
  --seeds 2 --variants "$B32_VARIANTS" --json "$OUT/b32.json"
# per run, batch 128: 2 x 15 s plain; compiled: symbolic shapes, so b32's graphs come from the inductor cache
step b128 90 python3 bench/bench_pipeline.py --shape base --examples 4096 --epochs 1 --batch 128 --repeats 1 \
  --seeds 2 --variants "$B128_VARIANTS" --json "$OUT/b128.json"
# per grid: 8 short fine-tunes (load, train, evaluate, save and log the model)
step grid 115 python3 bench/bench_grid.py --shape base --examples 256 --epochs 1 --batch 32 --timeout 55 \
  --json "$OUT/grid.json"
# file scoring and topic tagging (core/scoring) on the GPU: rows/s end to end, and bf16 autocast vs CPU fp32
step score 170 python3 bench/bench_score.py --shape base --json "$OUT/score.json"
# CUDA graphs at batch 32: one graph per bucket (static shapes), enough steps that the steady rate shows
TUNEBOARD_COMPILE_DYNAMIC=0 step ro32 330 python3 bench/bench_pipeline.py --shape base --examples 8192 --epochs 1 \
  --batch 32 --repeats 1 --seeds 1 --variants reduce-overhead --json "$OUT/ro32.json"
python3 - "$OUT" <<'EOF' 2>&1 | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("b32", "b128", "ro32"):
    try:
        s = json.loads((out / f"{name}.json").read_text())["summary"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"{name}: no figures ({exc})"); continue
    print(f"{name} on {s.get('device')}: plain {s.get('plain_samples_per_s')} samples/s "
          f"(steady {s.get('plain_steady_samples_per_s')})")
    for variant, v in (s.get("variants") or {}).items():
        spread = (s.get("spread") or {}).get(variant, {})
        print(f"  {variant}: {v['samples_per_s']} samples/s = {v['ratio']}x (steady {v['steady_samples_per_s']}"
              f" = {v['steady_ratio']}x), compile tag {v['compile']!r}, wall {v['wall_s']} s; loss within seed spread "
              f"{spread.get('loss_within_spread')} (gap {spread.get('loss_gap_to_same_seed')} vs seeds "
              f"{(s.get('spread') or {}).get('plain_seed_loss_gap')}), accuracy {spread.get('accuracy')} within "
              f"{spread.get('accuracy_within_spread')}")
try:
    g = json.loads((out / "grid.json").read_text())
    queue = g.get("queue", {})
    print(f"grid: plain {g.get('plain', {}).get('seconds', 0):.0f} s, queue {queue.get('seconds', 0):.0f} s, "
          f"ratio {g.get('ratio')}x; all finished {queue.get('all_finished')}; sharing "
          f"{[r.get('gpu_jobs_sharing') for r in queue.get('runs', [])]}, compile "
          f"{sorted({str(r.get('compile')) for r in queue.get('runs', [])})}")
except (OSError, ValueError) as exc:
    print(f"grid: no figures ({exc})")
try:
    print("score:", json.dumps(json.loads((out / "score.json").read_text()))[:1500])
except (OSError, ValueError) as exc:
    print(f"score: no figures ({exc})")
EOF
echo "total $(( $(date +%s) - t0 )) s"
