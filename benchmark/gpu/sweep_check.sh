#!/bin/bash
# Device-machine entry: MEMIT (batch of 100) and AlphaEdit (sequential batches of 25) settings sweeps on
# toy-direct, rows under $OUT/*.jsonl. Budgets: MEMIT_S and ALPHA_S seconds (no new setting after that).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 UNIKE_CACHE_DIR=/tmp/stats TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmark/gpu/editor_sweep.py --editor memit --protocol batch --cases 100 --device cuda \
    --settings benchmark/gpu/memit_settings.json --budget-s "${MEMIT_S:-120}" --out "$OUT/memit.jsonl" 2>&1 | grep -v "Loading weights"
python3 benchmark/gpu/editor_sweep.py --editor alphaedit --protocol sequential --batch-size 25 --cases 100 --device cuda \
    --settings benchmark/gpu/alphaedit_settings.json --budget-s "${ALPHA_S:-60}" --out "$OUT/alphaedit.jsonl" 2>&1 | grep -v "Loading weights"
