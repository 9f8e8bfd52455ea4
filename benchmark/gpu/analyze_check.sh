#!/bin/bash
# Device-machine check of the interpretability layer on CUDA: a 20-case toy-bottleneck x MEMIT
# benchmark, `unike analyze` on it (nnsight recording, HDF5, statistics, figures), and the
# recording-overhead script. Needs .whl/ with diffusers, nnsight and their missing dependencies.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 UNIKE_CACHE_DIR=/tmp/stats MPLBACKEND=Agg
nvidia-smi --query-gpu=name --format=csv,noheader
t0=$(date +%s)
python3 -m unike_interp analyze --model toy-bottleneck --editor memit --cases 20 --out /tmp/a1 --device cuda \
    --no-progress --json > "$OUT/analyze.log" 2>&1
echo "analyze rc=$? wall=$(( $(date +%s) - t0 )) s"
grep -v "^{" "$OUT/analyze.log" | grep -v "Loading\|figure:" | tail -12
ls /tmp/a1/analysis/figures | wc -l
cp /tmp/a1/analysis/stats.json "$OUT/" 2>/dev/null
python3 benchmark/perf/recording_overhead.py --device cuda --batch 8 64 256 --reps 20 2>&1 | grep -v Loading | tee "$OUT/overhead.txt"
