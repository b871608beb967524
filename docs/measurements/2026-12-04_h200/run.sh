#!/bin/bash
# The one device call of 2026-12-04 (issue 24), as it ran: the step against PyTorch
# (scripts/bench/gpu_h200.sh), then the bundled recipe from scratch on every cell a pretraining
# run may see (preset bundled_h200), sized to the time left, its checkpoints exported as encoder
# files for the validation probe on the CPU side. Carried: .whl (pinned wheels) and
# .devdata/h200/cells_128 (`scripts/release/pretrain_bundled.py --stage h200 --workdir
# .devdata/h200 --copies_only --quality 85`: 6,393 cells, 33 MB).
#   OUT=$OUT BUDGET=520 bash docs/measurements/2026-12-04_h200/run.sh
# (dry run on a CPU: BENCH_EXTRA, TORCH_EXTRA as in gpu_h200.sh, TRAIN_EXTRA: train overrides)
set -u
T0=$(date +%s); DEADLINE=$((T0 + ${BUDGET:-520})); OUT=${OUT:-/tmp/out}; PY=${PY:-python3}
mkdir -p "$OUT"
OUT=$OUT bash scripts/bench/gpu_h200.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
LEFT=$((DEADLINE - $(date +%s)))
# ~80 s compile and ~40 s export; ~6 steps/s at batch 256 (2026-11-26: 1,550-1,900 img/s)
STEPS=$(( (LEFT - 130) * 6 )); [ "$STEPS" -lt 100 ] && STEPS=100
EVERY=$(( STEPS / 4 + 1 ))
echo "bench done at $(( $(date +%s) - T0 )) s; training $STEPS steps, checkpoint every $EVERY" \
  | tee "$OUT/run.txt"
timeout $(( LEFT - 40 )) $PY -m cellssl_jax.train --config bundled_h200 --workdir /tmp/run \
  --config.data.folder=.devdata/h200/cells_128 --config.total_steps=$STEPS \
  --config.checkpoint_every=$EVERY ${TRAIN_EXTRA:-} > "$OUT/train_stdout.txt" 2>&1
echo "train rc $? at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/run.txt"
$PY - "$OUT" <<'PY' 2>&1 | grep -v "^[WI][0-9]" | tee -a "$OUT/run.txt"
import sys
from cellssl_jax.trainer import export_checkpoint
from cellssl_jax.trainer.checkpoints import Checkpointer
ckpt = Checkpointer("/tmp/run", keep=1 << 30)
steps = ckpt.manager.all_steps()
ckpt.close()
for step in sorted(steps)[-4:]:
    print("exported", export_checkpoint("/tmp/run", step, f"{sys.argv[1]}/h200_step{step}.msgpack"))
PY
cp /tmp/run/train.log /tmp/run/metrics.jsonl "$OUT/" 2>/dev/null
echo "done at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/run.txt"
cd "$OUT" && tar czf logs.tar.gz ./*.txt ./*.jsonl ./*.log && rm -f ./*.txt ./*.jsonl ./*.log
ls -la "$OUT"
