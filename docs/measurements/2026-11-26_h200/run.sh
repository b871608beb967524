#!/bin/bash
# One-shot device run: paper-preset throughput, then the bundled encoder's DINO run sized to
# the time left (probe img/s first). Env: BUDGET (s, whole script), PY, EXTRA (overrides), BENCH.
set -u
T0=$(date +%s); DEADLINE=$((T0 + ${BUDGET:-560})); PY=${PY:-python3}; OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${NOWHL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())") 2>&1 | tee "$OUT/gpu.txt"
if [ -n "${BENCH-1}" ]; then
  timeout ${BENCH_S:-150} $PY scripts/bench_train.py --config configs/paper_xcit_s12_p8.py --config.model.dtype=bfloat16 --config.batch_size=32 --steps 5 --peak_tflops 989 2>&1 | tail -4 | tee "$OUT/bench_paper_bf16.txt"
fi
CELLS=.devdata/cells
timeout 150 $PY -m cellssl_jax.train --config configs/bundled_encoder.py --workdir /tmp/probe --config.data.folder=$CELLS --config.total_steps=${PROBE_STEPS:-40} --config.checkpoint_every=100000 ${EXTRA:-} 2>&1 | tail -4 | tee "$OUT/probe.txt"
STEPS=$($PY - "$DEADLINE" <<'PY'
import json, re, sys, time
rec = [json.loads(l) for l in open("/tmp/probe/metrics.jsonl")]
ips = max(r["img_per_s"] for r in rec[-2:])
comp = float(re.search(r"took ([\d.]+) s", open("/tmp/probe/train.log").read()).group(1))
left = int(sys.argv[1]) - time.time() - comp - 30
print(max(int(left * ips / 256), 50))
PY
)
echo "probe done at $(( $(date +%s) - T0 )) s; main run: $STEPS steps" | tee -a "$OUT/probe.txt"
timeout $(( DEADLINE - $(date +%s) )) $PY -m cellssl_jax.train --config configs/bundled_encoder.py --workdir /tmp/run --config.data.folder=$CELLS --config.total_steps=$STEPS --config.checkpoint_every=$(( STEPS / 4 + 1 )) ${EXTRA:-} > "$OUT/train_stdout.txt" 2>&1
echo "train rc $? at $(( $(date +%s) - T0 )) s"
cp /tmp/run/encoder.msgpack /tmp/run/metrics.jsonl /tmp/run/train.log "$OUT/" 2>/dev/null
tail -3 /tmp/run/train.log
ls -la "$OUT"
