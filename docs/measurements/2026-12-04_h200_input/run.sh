#!/bin/bash
# The device call prepared on 2026-12-04 (not run: no machine was lent; README.md here): why
# preset bundled_h200 trained at 566-660 img/s (docs/measurements/2026-12-04_h200), and whether
# e51a65a (the reader's buffer: 64 images, not 1024) fixes it. Carried: .whl (pinned wheels, as in
# ../2026-12-04_h200/run.sh), .devdata/h200/cells_128 (the 6,393 cells of 128 px) and
# .devdata/h200_input (old_pipeline.py = `git show 057e21c:cellssl_jax/data/pipeline.py`, the
# pre-grain reader; the machine has no git).
#   OUT=$OUT BUDGET=450 bash docs/measurements/2026-12-04_h200_input/run.sh
#   1. the reader alone (bench_input.py): 1 thread, grain threads 8/16, grain processes 8/12,
#      the pre-grain pool 8/16, at batch 256; buffer_sweep.py (16 threads, buffers 1024..32);
#   2. training, STEPS steps each, one persistent compilation cache: A the preset as it is
#      (16 reader threads, 64 images ahead), A0 --config.data.prefetch=64 (16 x 64 = 1024 images
#      ahead: the buffer before e51a65a), B --config.data.worker_processes=12, C the loop fed one
#      fixed batch (train_fixed.py: no reader), D 4 reader threads if time is left;
#   3. bench_train.py on the same compiled step (the step alone, no loop), if time is left.
# Dry run on a CPU: PY=.venv/bin/python NOWHL=1 BATCH=16 N=256 STEPS=6 \
#   TRAIN_EXTRA="--config.model.depth=1 --config.head.out_dim=256 --config.log_every=2"
set -u
T0=$(date +%s); DEADLINE=$((T0 + ${BUDGET:-450})); OUT=${OUT:-/tmp/out}; PY=${PY:-python3}
CELLS=.devdata/h200/cells_128; HERE=docs/measurements/2026-12-04_h200_input
STEPS=${STEPS:-120}; N=${N:-16384}; BATCH=${BATCH:-256}; EXTRA=${TRAIN_EXTRA:-}
L=$OUT/logs; mkdir -p "$L"
left() { echo $(( DEADLINE - $(date +%s) )); }
stamp() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$L/run.txt"; }
if [ -d .whl ] && [ -z "${NOWHL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxcache}
rm -rf /tmp/runA /tmp/runA0 /tmp/runB /tmp/runC /tmp/runD
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; echo "nproc $(nproc)"
 $PY -c "import sys, jax, flax, optax, grain, PIL, numpy; print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'grain', getattr(grain, '__version__', '?'), 'PIL', PIL.__version__, 'numpy', numpy.__version__, jax.devices())" 2>&1 | tail -1
) | tee "$L/versions.txt"
stamp "versions"

T=$(left); [ "$T" -gt 130 ] && T=130
timeout "$T" $PY scripts/bench/bench_input.py --folder $CELLS --image_size 128 --batch "$BATCH" \
  --n "$N" --workers 8,16 --processes 8,12 --old_ref .devdata/h200_input/old_pipeline.py \
  --out "$OUT/input.json" > "$L/input.txt" 2>&1
stamp "bench_input rc $?"; grep '^{"' "$L/input.txt"
T=$(left); [ "$T" -gt 60 ] && T=60
timeout "$T" $PY $HERE/buffer_sweep.py $CELLS --batch "$BATCH" > "$L/sweep.txt" 2>&1
stamp "buffer_sweep rc $?"; grep '^{"' "$L/sweep.txt" | tee "$OUT/sweep.jsonl"

train() {  # name, then the program (module or file), then overrides
  local name=$1 prog=$2; shift 2
  local t=$(( $(left) - 15 ))
  [ "$t" -lt 20 ] && { stamp "$name skipped: ${t} s left"; return; }
  timeout "$t" $PY $prog --config bundled_h200 --workdir /tmp/$name \
    --config.data.folder=$CELLS --config.total_steps="$STEPS" --config.batch_size="$BATCH" \
    --config.checkpoint_every=100000 $EXTRA "$@" > "$L/$name.stdout" 2>&1
  stamp "$name rc $?"
  cp /tmp/$name/train.log "$L/$name.train.log" 2>/dev/null
  grep -h "took\|img/s" /tmp/$name/train.log 2>/dev/null | cut -c25- | tail -4
}
train runA "-m cellssl_jax.train"
train runA0 "-m cellssl_jax.train" --config.data.prefetch=64
train runB "-m cellssl_jax.train" --config.data.worker_processes=12
train runC "$HERE/train_fixed.py"
[ "$(left)" -gt 110 ] && train runD "-m cellssl_jax.train" --config.data.workers=4

T=$(( $(left) - 10 ))
if [ "$T" -gt 40 ]; then
  timeout "$T" $PY scripts/bench/bench_train.py --config bundled_h200 --num_examples 6393 \
    --config.total_steps="$STEPS" --config.batch_size="$BATCH" --steps 30 $EXTRA \
    --json "$OUT/bench_train.jsonl" > "$L/bench_train.txt" 2>&1
  stamp "bench_train rc $?"; grep -v "^[WI][0-9]" "$L/bench_train.txt" | tail -4
fi

$PY - "$OUT" <<'PY' 2>&1 | tee -a "$L/run.txt"
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1]); summary = {}
for log in sorted((out / "logs").glob("run*.train.log")):
    text = log.read_text()
    first = re.search(r"took ([\d.]+) s", text)
    rates = [float(r) for r in re.findall(r" ([\d.]+) img/s", text)]
    summary[log.name.split(".")[0]] = dict(
        first_step_s=float(first.group(1)) if first else None, img_per_s=rates,
        median=sorted(rates)[len(rates) // 2] if rates else None)
for name in ("input.json", "sweep.jsonl", "bench_train.jsonl"):
    if (out / name).exists():
        summary[name] = [json.loads(x) for x in (out / name).read_text().splitlines() if x.strip()] \
            if name.endswith("l") else json.loads((out / name).read_text())
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps({k: v for k, v in summary.items() if k.startswith("run")}))
PY
stamp "done"
(cd "$OUT" && tar czf logs.tar.gz logs && rm -rf logs)
ls -la "$OUT"
