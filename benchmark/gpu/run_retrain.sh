#!/bin/bash
# Device-machine entry: retrain the three SynthWorld generators on the GPU and bring back the
# generator folders, the merged build.json and the eval JSON under $OUT.
# Needs .whl/ (diffusers + importlib_metadata wheels; see benchmark/gpu/README.md) carried along.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch,diffusers,transformers;print('torch',torch.__version__,'diffusers',diffusers.__version__,'transformers',transformers.__version__,torch.cuda.get_device_name())" || exit 1
python3 benchmark/gpu/retrain_generators.py --out /tmp/gw/w --device cuda --budget-s "${BUDGET:-330}" \
    --max-steps "${MAX_STEPS:-40000}" ${SETS:+$(for x in $SETS; do printf -- "--set %s " "$x"; done)} 2>&1 | grep -v "Loading weights" | tee "$OUT/log.txt"
rc=$?
cd /tmp/gw/w || exit 1
for p in toy-direct toy-queries toy-bottleneck; do [ -d "$p" ] && tar czf "$OUT/$p.tar.gz" "$p"; done
cp build.json "$OUT/" 2>/dev/null; cp eval.json "$OUT/" 2>/dev/null
cd /tmp/gw && tar czf "$OUT/logs.tar.gz" w_logs
exit $rc
