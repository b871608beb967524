import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sslda_var  # noqa: F401 (patches the LDA)
from harness import run
ds = sys.argv[1]; anchors = sys.argv[2].split(","); methods = sys.argv[3].split(",")
n = tuple(int(v) for v in sys.argv[4].split(","))
mixes = tuple(sys.argv[5].split(";")) if len(sys.argv) > 5 else ("balanced", "normal_blood", "dirichlet")

for a in anchors:
    os.environ["SSLDA_ANCHOR"] = a
    print("== anchor", a, flush=True)
    run(ds, ["cls+ch"], methods, n, mixes, repeats=5, jobs=1)
