#!/bin/bash
# Continue the bundled encoder from its teacher backbone (fresh head) at 176 px for STEPS steps;
# each checkpoint exports the encoder, so a timeout still leaves the latest one.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt
STEPS=${STEPS:-1300}
timeout ${LIMIT:-510} python3 -m cellssl_jax.train --config configs/bundled_encoder.py --workdir ${WORKDIR:-/tmp/run} \
  --config.data.folder=.devdata/cells176 --config.data.image_size=176 \
  --config.augment.global_size=160 --config.augment.local_size=64 \
  --config.init_encoder=${INIT:-cellssl_jax/assets/encoder_default.msgpack} \
  --config.total_steps=$STEPS --config.optim.warmup_epochs=2.0 --config.checkpoint_every=${EVERY:-325} \
  > $OUT/train_stdout.txt 2>&1
echo "rc $? at $(( $(date +%s) - T0 )) s"
mkdir -p $OUT/run && cp ${WORKDIR:-/tmp/run}/encoder.msgpack ${WORKDIR:-/tmp/run}/metrics.jsonl ${WORKDIR:-/tmp/run}/train.log $OUT/run/ 2>/dev/null
tail -3 ${WORKDIR:-/tmp/run}/train.log
