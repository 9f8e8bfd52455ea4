#!/bin/bash
# Device-machine check of the benchmark: toy-direct x MEMIT x 100 cases on CUDA in float32, and a
# bfloat16 run (20 cases) to check that dtype passes through; tables and manifests back under $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 UNIKE_CACHE_DIR=/tmp/stats
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
run() {  # name, extra args
  local name=$1; shift
  local t0=$(date +%s)
  python3 -m unike_interp bench --model toy-direct --editor memit --device cuda --no-progress /tmp/$name "$@" \
      > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall=$(( $(date +%s) - t0 )) s"
  mkdir -p "$OUT/$name"; cp /tmp/$name/table.md /tmp/$name/manifest.json "$OUT/$name/" 2>/dev/null
  tail -3 "$OUT/$name.log"
}
run cuda_fp32 --cases 100
run cuda_bf16 --cases 20 --dtype bfloat16
