#!/usr/bin/env python3
"""The engine's batch-1 latency side by side with onnxruntime's on the same ONNX files, in one run
(these machines are noisy: rounds alternate between the two, and each side's best median counts).

    /usr/bin/python3 bench/engine_vs_ort.py [--recipes float bnn po2-int8] [--models M.onnx ...]
                                            [--threads 1] [--runs 300] [--rounds 3]

Recipes are trained for one epoch on 2,000 Fashion-MNIST images (the kernels a model gets do not
depend on its accuracy) and exported in both formats: both sides run the standard export, lowbit
also its QONNX twin; a generated float-only CNN on 3x112x112 (a >= 5 ms model) follows.
--models adds standard ONNX files (their input shape must be fixed).
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
            "--out", out, "--no-progress", "--overwrite")
        paths = []
        for fmt in ("standard", "qonnx"):
            paths.append(work / f"{recipe}-{fmt}.onnx")
            run(ROOT / "build" / "lowbit", "export", "--checkpoint", out, "--out", paths[-1], "--format", fmt)
        models.append((recipe, *paths))
    return models


def float_cnn(path):
    """A float-only CNN of about 100 M multiply-adds on 3x112x112 (a >= 5 ms model on one thread):
    three 3x3 convolutions with ReLU and max-pooling, global average pooling, a dense layer."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits, nodes, prev, c = [], [], "x", 3
    for i, m in enumerate([32, 64, 64]):
        inits += [numpy_helper.from_array((rng.normal(size=(m, c, 3, 3)) / (3 * c) ** 0.5).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(m, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        prev, c = f"r{i}", m
        if i < 2:
            nodes.append(helper.make_node("MaxPool", [prev], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            prev = f"p{i}"
    inits.append(numpy_helper.from_array(rng.normal(size=(10, 64)).astype(np.float32), "wd"))
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "wd"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "cnn112", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 112, 112])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


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
    p.add_argument("--no-cnn", dest="cnn", action="store_false",
                   help="leave out the generated float CNN (3x112x112, about 100 M multiply-adds)")
    p.add_argument("--work", help="keep the exported models in this folder (default: a temporary one)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.work:
            tmp = a.work
            Path(tmp).mkdir(parents=True, exist_ok=True)
        models = exports(a.recipes, Path(tmp)) + [(Path(m).name, Path(m), None) for m in a.models]
        if a.cnn:
            models.append(("float CNN 112", float_cnn(Path(tmp) / "cnn112.onnx"), None))
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
