#!/usr/bin/env python3
"""The engine's batch-1 latency side by side with onnxruntime's on the same ONNX files, in one run
(these machines are noisy: rounds alternate between the two, and each side's best median counts).

    /usr/bin/python3 bench/engine_vs_ort.py [--recipes float bnn po2-int8] [--models M.onnx ...]
                                            [--threads 1] [--runs 300] [--rounds 3]

Recipes are trained for one epoch on 2,000 Fashion-MNIST images (the kernels a model gets do not
depend on its accuracy) and exported in both formats; --models adds any ONNX files (their input
shape must be fixed). onnxruntime is npm's onnxruntime-node with all graph optimisations
(bench/ort_latency.js); lowbit is build/lowbit-run bench. Prints a table and, with --json, one JSON
line per model. The ratio is onnxruntime's latency over lowbit's (above 1: lowbit is faster)."""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import onnx  # noqa: E402

import onnx_reference as ref  # noqa: E402


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True).stdout


def exports(recipes, work):
    data = ref.subset(work / "data", train=2000, test=100)
    models = []
    for recipe in recipes:
        out = work / recipe
        run(ROOT / "build" / "lowbit", "train", "--model", recipe, "--data", data, "--epochs", 1,
            "--out", out, "--no-progress")
        for fmt in ("qonnx", "standard"):
            path = work / f"{recipe}-{fmt}.onnx"
            run(ROOT / "build" / "lowbit", "export", "--checkpoint", out, "--out", path, "--format", fmt)
            models.append((f"{recipe} ({fmt})", path))
    return models


def input_shape(path):
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    return [1] + [d.dim_value for d in dims[1:]]


def measure(name, path, threads, runs, rounds):
    shape = ",".join(map(str, input_shape(path)))
    best_lowbit = best_ort = float("inf")
    for _ in range(rounds):
        r = json.loads(run(ROOT / "build" / "lowbit-run", "bench", path, "--shape", shape, "--threads", threads,
                           "--runs", runs, "--seconds", 0, "--warmup", 20, "--json"))
        best_lowbit = min(best_lowbit, r["latency_ms_p50"])
        o = json.loads(run("node", ROOT / "bench" / "ort_latency.js", path, shape, runs, threads))
        best_ort = min(best_ort, o["median_ms"])
    kernels = sorted({p["kernel"] for p in r["profile"]})
    return {"model": name, "file": str(path), "shape": shape, "threads": threads,
            "lowbit_ms": best_lowbit, "onnxruntime_ms": best_ort, "ratio": best_ort / best_lowbit,
            "kernels": kernels}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="*", default=["float", "bnn", "po2-int8"])
    p.add_argument("--models", nargs="*", default=[])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = exports(a.recipes, Path(tmp)) + [(Path(m).name, Path(m)) for m in a.models]
        print(f"{'model':<26} {'lowbit ms':>10} {'onnxruntime ms':>15} {'ratio':>7}")
        for name, path in models:
            r = measure(name, path, a.threads, a.runs, a.rounds)
            if a.json:
                print(json.dumps(r))
            else:
                print(f"{name:<26} {r['lowbit_ms']:>10.4f} {r['onnxruntime_ms']:>15.4f} {r['ratio']:>7.2f}")


if __name__ == "__main__":
    main()
