cd "$(dirname "$0")/../../.." && mkdir -p runs/nucleus_split
export OPENBLAS_NUM_THREADS=1
for ds in bm pbc; do
  for v in "base 0" "green 30" "green 50" "grey 40"; do set -- $v
    .venv/bin/python docs/measurements/2026-12-05_nucleus_split/variants.py runs/feat4/$ds/features.npz runs/nucleus_split/${ds}_$1$2.npz $1 $2
  done
done
for ds in bm pbc; do .venv/bin/python docs/measurements/2026-12-05_nucleus_split/eval.py $ds shipped,base0,green30,green50,grey40; done
