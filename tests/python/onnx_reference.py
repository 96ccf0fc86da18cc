"""Test helpers for the ONNX export: IDX subsets, onnxruntime through node, and QONNX's reference
semantics written with standard operators (so that onnxruntime can run a QONNX export too)."""
import gzip
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "onnx" / "run_ort.js"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def subset(out_dir, train=2000, test=1000):
    """The first `train` / `test` Fashion-MNIST images as an IDX data set in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            write_idx(out / f"{prefix}-{kind}", read_idx(FASHION / f"{prefix}-{kind}.gz")[:n])
    return out


def node_runner_available():
    return shutil.which("node") is not None and (RUNNER.parent / "node_modules" / "onnxruntime-node").is_dir()


def run_ort(model_path, images, work_dir):
    """Logits of onnxruntime (one thread, no graph rewrites) on uint8 images [N, H, W] or
    [N, C, H, W]."""
    n, c, h, w = images.shape if images.ndim == 4 else (images.shape[0], 1, *images.shape[1:])
    src = Path(work_dir) / "images.f32"
    dst = Path(work_dir) / "ort-logits.f32"
    images.astype(np.float32).tofile(src)
    subprocess.run(
        ["node", str(RUNNER), str(model_path), str(src), str(n), str(c), str(h), str(w), str(dst)],
        check=True,
        capture_output=True,
        text=True,
    )
    return np.fromfile(dst, dtype=np.float32).reshape(n, -1)


def run_ort_any(model_path, x, work_dir):
    """The first output of onnxruntime (one thread, no graph rewrites) on float32 input x."""
    src = Path(work_dir) / "ort-input.f32"
    dst = Path(work_dir) / "ort-output.f32"
    np.ascontiguousarray(x, dtype=np.float32).tofile(src)
    r = subprocess.run(
        ["node", str(RUNNER.parent / "run_ort_any.js"), str(model_path), str(src),
         ",".join(map(str, x.shape)), str(dst)],
        check=True, capture_output=True, text=True)
    dims = [int(d) for d in r.stdout.strip().strip("[]").split(",")]
    return np.fromfile(dst, dtype=np.float32).reshape(dims)


def read_npy(path):
    return np.load(path)


# ---- QONNX's reference semantics (the qonnx package's sample implementation) ---------------------

def _const(graph, name, value):
    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
    return name


def constant_values(model):
    """name -> numpy value of every initializer and of every node computed from initializers only,
    by the standard operators the exports use for constants (packed binary kernels: Cast, Reshape,
    Div, Floor, Mul, Sub, Slice), with numpy's float32 semantics."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ops = {
        "Div": lambda a, b: np.divide(a, b, dtype=np.float32),
        "Mul": lambda a, b: np.multiply(a, b, dtype=np.float32),
        "Sub": lambda a, b: np.subtract(a, b, dtype=np.float32),
        "Add": lambda a, b: np.add(a, b, dtype=np.float32),
    }
    for n in model.graph.node:
        if not n.input or not all(i in values for i in n.input if i):
            continue
        x = [values[i] for i in n.input if i]
        if n.op_type in ops:
            y = ops[n.op_type](*x)
        elif n.op_type == "Floor":
            y = np.floor(x[0])
        elif n.op_type == "Cast":
            y = x[0].astype(np.float32)
        elif n.op_type == "Reshape":
            y = x[0].reshape([int(d) for d in x[1]])
        elif n.op_type == "Slice":
            y = x[0][tuple(slice(int(a), int(b)) for a, b in zip(x[1], x[2]))]
        else:
            continue
        values[n.output[0]] = np.asarray(y)
    return values


def qonnx_to_standard(model):
    """A copy of a QONNX model whose Quant / BipolarQuant nodes are replaced by standard operators
    computing QONNX's reference semantics in float32:
      BipolarQuant: where(x >= 0, 1, -1) * scale
      Quant: v = clamp(x / scale + zeropt, min_int, max_int); (round(v) - zeropt) * scale
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    new_nodes = []
    counter = [0]

    def name(hint):
        counter[0] += 1
        return f"{hint}__ref{counter[0]}"

    def op(kind, inputs, output=None):
        out = output or name(kind)
        new_nodes.append(helper.make_node(kind, inputs, [out]))
        return out

    for node in g.node:
        if node.domain != "qonnx.custom_op.general":
            new_nodes.append(node)
            continue
        out = node.output[0]
        if node.op_type == "BipolarQuant":
            x, scale = node.input
            ge = op("GreaterOrEqual", [x, _const(g, name("zero"), 0.0)])
            signs = op("Where", [ge, _const(g, name("one"), 1.0), _const(g, name("minus"), -1.0)])
            op("Mul", [signs, scale], out)
            continue
        assert node.op_type == "Quant", node.op_type
        x, scale, zeropt, bitwidth = node.input
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        signed, narrow = attrs.get("signed", 1), attrs.get("narrow", 0)
        mode = attrs.get("rounding_mode", b"ROUND")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        bits = int(inits[bitwidth])
        if signed:
            lo, hi = -(2 ** (bits - 1)) + (1 if narrow else 0), 2 ** (bits - 1) - 1
        else:
            lo, hi = 0, 2**bits - (2 if narrow else 1)
        v = op("Add", [op("Div", [x, scale]), zeropt])
        v = op("Clip", [v, _const(g, name("lo"), lo), _const(g, name("hi"), hi)])
        if mode == "ROUND":
            r = op("Round", [v])
        elif mode == "CEIL":
            r = op("Ceil", [v])
        elif mode == "FLOOR":
            r = op("Floor", [v])
        elif mode == "HALF_UP":  # half away from zero
            r = op("Mul", [op("Sign", [v]), op("Floor", [op("Add", [op("Abs", [v]), _const(g, name("half"), 0.5)])])])
        else:
            raise ValueError(f"rounding mode {mode}")
        op("Mul", [op("Sub", [r, zeropt]), scale], out)
    del g.node[:]
    g.node.extend(new_nodes)
    kept = [o for o in model.opset_import if o.domain != "qonnx.custom_op.general"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model
