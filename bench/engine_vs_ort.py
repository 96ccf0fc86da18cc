#!/usr/bin/env python3
"""The engine's batch-1 latency side by side with onnxruntime's on the same ONNX files, in one run
(these machines are noisy: rounds alternate between the two, and each side's best median counts).

    /usr/bin/python3 bench/engine_vs_ort.py [--recipes float bnn po2-int8] [--models M.onnx ...]
                                            [--threads 1] [--runs 300] [--rounds 3]

Recipes are trained for one epoch on 2,000 Fashion-MNIST images (the kernels a model gets do not
depend on its accuracy) and exported in both formats: both sides run the standard export, lowbit
also its QONNX twin. --models adds standard ONNX files (their input shape must be fixed).
onnxruntime is npm's onnxruntime-node with all graph optimisations (bench/ort_latency.js); lowbit is
build/lowbit-run bench. Prints a table, or with --json one JSON line per model. A ratio is
onnxruntime's latency over lowbit's (above 1: lowbit is faster)."""
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
    """(name, standard export, QONNX export) of each recipe."""
    data = ref.subset(work / "data", train=2000, test=100)
    models = []
    for recipe in recipes:
        out = work / recipe
        run(ROOT / "build" / "lowbit", "train", "--model", recipe, "--data", data, "--epochs", 1,
            "--out", out, "--no-progress")
        paths = []
        for fmt in ("standard", "qonnx"):
            paths.append(work / f"{recipe}-{fmt}.onnx")
            run(ROOT / "build" / "lowbit", "export", "--checkpoint", out, "--out", paths[-1], "--format", fmt)
        models.append((recipe, *paths))
    return models


def input_shape(path):
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    return ",".join(map(str, [1] + [d.dim_value for d in dims[1:]]))


def lowbit_ms(path, threads, runs):
    r = json.loads(run(ROOT / "build" / "lowbit-run", "bench", path, "--shape", input_shape(path),
                       "--threads", threads, "--runs", runs, "--seconds", 0, "--warmup", 20, "--json"))
    return r["latency_ms_p50"]


def ort_ms(path, threads, runs):
    o = json.loads(run("node", ROOT / "bench" / "ort_latency.js", path, input_shape(path), runs, threads))
    return o["median_ms"]


def measure(name, standard, qonnx, threads, runs, rounds):
    """Best of `rounds` medians, the sides alternating: lowbit on the standard file (and on the QONNX
    twin where there is one), onnxruntime on the standard file (it does not run QONNX's nodes)."""
    best = {"lowbit_ms": float("inf"), "onnxruntime_ms": float("inf")}
    if qonnx:
        best["lowbit_qonnx_ms"] = float("inf")
    for _ in range(rounds):
        best["lowbit_ms"] = min(best["lowbit_ms"], lowbit_ms(standard, threads, runs))
        best["onnxruntime_ms"] = min(best["onnxruntime_ms"], ort_ms(standard, threads, runs))
        if qonnx:
            best["lowbit_qonnx_ms"] = min(best["lowbit_qonnx_ms"], lowbit_ms(qonnx, threads, runs))
    r = {"model": name, "threads": threads, **best, "ratio": best["onnxruntime_ms"] / best["lowbit_ms"]}
    if qonnx:
        r["ratio_qonnx"] = best["onnxruntime_ms"] / best["lowbit_qonnx_ms"]
    return r


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
        models = exports(a.recipes, Path(tmp)) + [(Path(m).name, Path(m), None) for m in a.models]
        if not a.json:
            print(f"{'model':<16} {'lowbit ms':>10} {'lowbit QONNX ms':>16} {'onnxruntime ms':>15} "
                  f"{'ratio':>6} {'ratio QONNX':>12}")
        for name, standard, qonnx in models:
            r = measure(name, standard, qonnx, a.threads, a.runs, a.rounds)
            if a.json:
                print(json.dumps(r))
                continue
            q = f"{r['lowbit_qonnx_ms']:>16.4f}" if qonnx else f"{'':>16}"
            rq = f"{r['ratio_qonnx']:>12.2f}" if qonnx else ""
            print(f"{name:<16} {r['lowbit_ms']:>10.4f} {q} {r['onnxruntime_ms']:>15.4f} {r['ratio']:>6.2f} {rq}")


if __name__ == "__main__":
    main()
