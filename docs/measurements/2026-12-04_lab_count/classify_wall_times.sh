cd /work/main
export OPENBLAS_NUM_THREADS=1
for tag in warm svm default svm2 default2; do
  m=$([ "${tag%2}" = default ] && echo "" || echo "--method svm")
  s=$(date +%s.%N); .venv/bin/python -m cellssl_jax.classify --labelled /tmp/labw/labelled --unlabelled /tmp/labw/unl --out /tmp/labw/out_$tag $m > /tmp/labw/$tag.log 2>&1; e=$(date +%s.%N)
  echo "$tag $(echo "$e - $s" | bc) load $(cut -d' ' -f1 /proc/loadavg)" >> /tmp/labw/times.txt
done
