#!/bin/bash
# The DINO step against PyTorch on one GPU (issue 24), outputs in $OUT:
#   1. ours: the paper preset (XCiT-S12/p8, 2x224 + 5x96 crops, 65536-d head), bf16, at one
#      batch (BATCH, default 128; each batch size costs a ~85 s compile): img/s, compile time,
#      peak memory, the augmentation alone, analytic MFU (989 TFLOP/s: the H200's dense bf16
#      peak), XLA's figure beside it, and a jax.profiler trace's top ops -> ours.jsonl, ours.txt;
#   2. the same step in PyTorch (timm XCiT + tests/torch_dino.py), bf16 autocast, at BATCH and
#      half of it -> torch.jsonl, torch.txt.
#
# Environment, exactly: the device machine's own jax/jaxlib with its CUDA plugin and its torch,
# plus our pinned pure-Python dependencies carried as wheels and installed without the network
# (prepare them on this side once; --platform flags as in the device tool's README):
#   pip download --no-deps --only-binary=:all: -d .whl flax==0.12.8 optax==0.2.8 \
#       orbax-checkpoint==0.12.8 grain==0.2.18 ml_collections==1.1.0 tensorboardX==2.6.5 \
#       array_record==0.8.6 portpicker
# and carry .whl (ignored by git) with the device tool.
#
#   OUT=$OUT bash scripts/bench/gpu_h200.sh
# A dry run on a CPU: BENCH_EXTRA="--config.model.depth=1 --config.head.out_dim=256 ..." (config
# overrides of our side) and TORCH_EXTRA="--out_dim 256 ..." (bench_torch_step's flags).
set -u
OUT=${OUT:-/tmp/out}; PY=${PY:-python3}; BATCH=${BATCH:-128}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ] && [ ! -d /tmp/site ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
 $PY -c "import jax, flax, optax, grain; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
 $PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.is_available())" 2>&1 | tail -1
) | tee "$OUT/versions.txt"

timeout ${OURS_S:-200} $PY scripts/bench/bench_train.py --config paper_xcit_s12_p8 \
  --config.model.dtype=bfloat16 --config.batch_size=$BATCH --steps 10 --peak_tflops 989 \
  --profile /tmp/profile --top_ops 15 --json "$OUT/ours.jsonl" ${BENCH_EXTRA:-} 2>&1 | grep -v "^[WI][0-9]" \
  | tail -8 | tee "$OUT/ours.txt"

if $PY -c "import torch, timm; assert torch.cuda.is_available() or '${TORCH_EXTRA:-}'" 2>/dev/null; then
  timeout ${TORCH_S:-120} $PY scripts/bench/bench_torch_step.py --arch xcit_small_12_p8 \
    --batch $((BATCH / 2)),$BATCH --json "$OUT/torch.jsonl" ${TORCH_EXTRA:-} 2>&1 | tail -5 | tee "$OUT/torch.txt"
else
  echo "no CUDA PyTorch with timm on this machine: PyTorch side skipped" | tee "$OUT/torch.txt"
fi
