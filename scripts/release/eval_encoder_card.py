"""The numbers of an encoder's model card, measured with the project's own commands.

Compares four feature extractors on the real cells in ../shared/data:
  random  - the same architecture at random initialisation (seed 0),
  colour  - per-channel colour histograms (3 x 32 bins), no encoder,
  encoder - the encoder under test (default: the bundled one),
  both    - encoder and colour histogram side by side (`--features xcit+colorhist`),
on (1) PBC in-domain: paper-code SVM and LR fitted on 50 cells/class of the PBC 70/30 train
part, scored on its test part, 20 repeats; (2) direct transfer: fitted on 250 bone-marrow
cells/class (matek_bm_dev), predicting the PBC test part with probability masking. Every step is a
`python -m cellssl_jax.<job>` call; results go to --out (summary.md, summary.json).

    python scripts/release/eval_encoder_card.py --out runs/card [--encoder F] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cellssl_jax.data import shared_data_dir
from cellssl_jax.encoder import load_encoder, random_init_encoder

CLASSIFIERS = ("svm", "lr")
SHARED = shared_data_dir()


def run(*args: str) -> None:
    print("$ python -m", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, default=None, help="default: the bundled encoder")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"real cells not found at {SHARED} (set CELLSSL_SHARED_DATA)")
    out, tfds_dir = args.out, args.out / "tfds"
    out.mkdir(parents=True, exist_ok=True)
    if not (tfds_dir / "acevedo").exists():
        run("cellssl_jax.data.prepare", "acevedo", "--manual_dir",
            str(SHARED / "acevedo_pbc_dev"), "--data_dir", str(tfds_dir))
    enc = load_encoder(args.encoder)
    # the same architecture, pixels and size at random initialisation (seed 0)
    random_path = random_init_encoder(out / "random_init.msgpack", enc.arch,
                                      enc.meta["model_config"], enc.mean, enc.std, enc.input_size)
    encoder = str(enc.path)
    kinds = {"random init": ["--encoder", str(random_path)],
             "colour histogram": ["--features", "colorhist"],
             "encoder": ["--encoder", encoder],
             "encoder + colour histogram": ["--features", "xcit+colorhist",
                                            "--encoder", encoder]}
    rows = []
    for i, (kind, flags) in enumerate(kinds.items()):
        feats = {}
        for name, images in [("pbc_train", "tfds:acevedo/train"), ("pbc_test", "tfds:acevedo/test"),
                             ("bm", str(SHARED / "matek_bm_dev"))]:
            feats[name] = out / f"{i}_{name}" / "features.npz"
            if not feats[name].exists():
                run("cellssl_jax.extract", "--images", images, "--data_dir", str(tfds_dir),
                    "--out", str(feats[name].parent), *flags)
        common = ["--classifiers", ",".join(CLASSIFIERS), "--preset", "paper-code",
                  "--repeats", str(args.repeats)]
        run("cellssl_jax.evaluate", "fewshot", "--train", str(feats["pbc_train"]), "--test",
            str(feats["pbc_test"]), "--n", "50", "--out", str(out / f"{i}_fewshot"), *common)
        run("cellssl_jax.evaluate", "transfer", "--source", str(feats["bm"]), "--target",
            str(feats["pbc_test"]), "--map", "matek_bm->acevedo", "--out",
            str(out / f"{i}_transfer"), *common)
        for protocol in ("fewshot", "transfer"):
            for summary in json.loads((out / f"{i}_{protocol}" / "summary.json").read_text()):
                rows.append({"features": kind, "protocol": protocol,
                             "classifier": summary["classifier"],
                             "n_per_class": summary["n_per_class"],
                             "balanced_accuracy_mean": summary["balanced_accuracy_mean"],
                             "balanced_accuracy_std": summary["balanced_accuracy_std"],
                             "repeats": summary["repeats"]})
    (out / "summary.json").write_text(json.dumps({"encoder": encoder, "rows": rows}, indent=2))
    columns = [(p, c) for p in ("fewshot", "transfer") for c in CLASSIFIERS]
    title = {"fewshot": "PBC 70/30, 50 cells/class", "transfer": "BM -> PBC transfer, 250/class"}
    lines = ["| features | " + " | ".join(f"{title[p]}, {c.upper()}" for p, c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for kind in kinds:
        cells = [f"{r['balanced_accuracy_mean']:.1%} ± {r['balanced_accuracy_std']:.1%}"
                 for p, c in columns for r in rows
                 if (r["features"], r["protocol"], r["classifier"]) == (kind, p, c)]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'summary.md'} and {out / 'summary.json'}")


if __name__ == "__main__":
    main()
