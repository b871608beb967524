#!/bin/bash
# The GPU measurements of issue 14 in one device call (~8 min on one H200), outputs in $OUT:
#   1. ours: the paper preset (XCiT-S12/p8, 2x224 + 5x96 crops, 65536-d head), bf16, batch 32,
#      64, 128, 256 (as far as memory allows): img/s, compile time, peak memory, analytic MFU
#      (989 TFLOP/s: the H200's dense bf16 peak), XLA's figure beside it -> ours.jsonl;
#   2. the same step in PyTorch (timm XCiT + tests/torch_dino.py), bf16 autocast -> torch.jsonl;
#   3. a jax.profiler trace of our best batch, top 5 ops by time -> profile.txt.
#
# Environment, exactly: the device machine's own jax/jaxlib with its CUDA plugin (0.11.2 + CUDA
# 13 on the 2026-11-26 machine; the local wheel store has no CUDA plugin for our pinned 0.10.2,
# so the GPU figures name the version they ran on), plus our pinned pure-Python dependencies
# carried as wheels and installed without the network (prepare them on this side once):
#   pip download --no-deps -d .whl flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8 \
#       grain==0.2.18 ml_collections==1.1.0 einops==0.8.2 tensorboardX==2.6.5 timm==1.0.31
# and carry .whl (ignored by git) with the device tool. PyTorch: the machine's torch if it has a
# CUDA build, else step 2 is skipped with a message (torch==2.14.1+cu130 is ~5 GB: not carried).
#
#   OUT=$OUT bash scripts/bench/gpu_h200.sh
set -u
OUT=${OUT:-/tmp/out}; PY=${PY:-python3}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
 $PY -c "import jax, flax, optax, grain; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
 $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tail -1
) | tee "$OUT/versions.txt"

for B in 32 64 128 256; do
  timeout 150 $PY scripts/bench/bench_train.py --config paper_xcit_s12_p8 \
    --config.model.dtype=bfloat16 --config.batch_size=$B --steps 10 --peak_tflops 989 \
    --json "$OUT/ours.jsonl" 2>&1 | tail -5 | tee -a "$OUT/ours.txt" || break
done
BEST=$($PY -c "import json; r=[json.loads(l) for l in open('$OUT/ours.jsonl')]; print(max(r, key=lambda x: x['img_per_s'])['batch'])")

if $PY -c "import torch, timm; assert torch.cuda.is_available()" 2>/dev/null; then
  timeout 180 $PY scripts/bench/bench_torch_step.py --arch xcit_small_12_p8 --batch 32,64,128,256 \
    --json "$OUT/torch.jsonl" 2>&1 | tail -5 | tee "$OUT/torch.txt"
else
  echo "no CUDA PyTorch with timm on this machine: PyTorch side skipped" | tee "$OUT/torch.txt"
fi

timeout 150 $PY scripts/bench/bench_train.py --config paper_xcit_s12_p8 \
  --config.model.dtype=bfloat16 --config.batch_size=$BEST --steps 5 --peak_tflops 989 \
  --profile /tmp/profile 2>&1 | tail -3 | tee "$OUT/profile.txt"
