"""`lowbit-run` (torch-free) and `lowbit run` / `lowbit bench` on models that are not lowbit's
image classifiers: graphs written here with onnx.helper from ONNX's operator definitions, run on
.npy files and compared with onnxruntime (npm's onnxruntime-node) on the same file."""
import json
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_reference as ref

RUNNER = ref.ROOT / "build" / "lowbit-run"
LOWBIT = ref.ROOT / "build" / "lowbit"


def cmd(binary, *args, check=True):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, check=check)


def save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def graph(nodes, inputs, output, inits, opset=13):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, inputs)],
        [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def mlp(rng):
    """[batch, 8] -> Gemm -> Relu -> Gemm (transB) -> [batch, 3]: vectors in and out."""
    return graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)],
        ["batch", 8], ("y", ["batch", 3]),
        {"w1": rng.normal(size=(8, 16)), "b1": rng.normal(size=16),
         "w2": rng.normal(size=(3, 16)), "b2": rng.normal(size=3)})


def image_to_image(rng):
    """[batch, 2, 9, 7] -> Conv 3x3 (pads 1, stride 1) -> Relu -> MaxPool 2x2 -> [batch, 4, 4, 3]."""
    return graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
        ["batch", 2, 9, 7], ("y", ["batch", 4, 4, 3]),
        {"w": rng.normal(size=(4, 2, 3, 3)), "b": rng.normal(size=4)})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if not ref.node_runner_available():
        pytest.fail("onnxruntime-node is not installed: run ./scripts/setup (npm ci in tests/onnx)")
    root = tmp_path_factory.mktemp("engine-run")
    rng = np.random.default_rng(7)
    return root, {"mlp": save(mlp(rng), root / "mlp.onnx"),
                  "image": save(image_to_image(rng), root / "image.onnx")}


@pytest.mark.parametrize("binary", [RUNNER, LOWBIT])
@pytest.mark.parametrize("name, shape", [("mlp", (5, 8)), ("image", (3, 2, 9, 7))])
def test_run_npy_equals_onnxruntime(models, binary, name, shape, tmp_path):
    root, paths = models
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = json.loads(cmd(binary, "run", paths[name], "--input", tmp_path / "x.npy",
                            "--output", tmp_path / "y.npy", "--threads", 2).stdout)
    y = np.load(tmp_path / "y.npy")
    expected = ref.run_ort_any(paths[name], x, tmp_path)
    assert y.dtype == np.float32 and y.shape == expected.shape
    assert result["images"] == shape[0] and result["output_shape"] == list(expected.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def two_outputs(rng, outputs):
    """image_to_image's graph with the Relu's output "r" ([batch, 4, 9, 7], which the MaxPool also
    reads) and the pooled "y" ([batch, 4, 4, 3]) as graph outputs, those named, in that order."""
    shapes = {"y": ["batch", 4, 4, 3], "r": ["batch", 4, 9, 7]}
    m = image_to_image(rng)
    del m.graph.output[:]
    m.graph.output.extend([helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in outputs])
    return m


@pytest.mark.parametrize("binary", [RUNNER, LOWBIT])
def test_several_outputs_each_to_its_file(binary, tmp_path):
    if not ref.node_runner_available():
        pytest.fail("onnxruntime-node is not installed: run ./scripts/setup (npm ci in tests/onnx)")
    paths = {}
    for outs in (("r", "y"), ("y",), ("r",)):
        paths[outs] = save(two_outputs(np.random.default_rng(5), outs), tmp_path / ("-".join(outs) + ".onnx"))
    x = np.random.default_rng(6).normal(size=(3, 2, 9, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = json.loads(cmd(binary, "run", paths[("r", "y")], "--input", tmp_path / "x.npy", "--output",
                            tmp_path / "r.npy", "--output", tmp_path / "y.npy", "--threads", 2).stdout)
    assert result["output_shapes"] == [[3, 4, 9, 7], [3, 4, 4, 3]]
    assert result["outputs"] == [str(tmp_path / "r.npy"), str(tmp_path / "y.npy")]
    # Each file against onnxruntime on the model of that output alone.
    for name in ("r", "y"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), ref.run_ort_any(paths[(name,)], x, tmp_path),
                                   rtol=1e-5, atol=1e-5)
    # One --output for two outputs: an error naming them, nothing written.
    r = cmd(binary, "run", paths[("r", "y")], "--input", tmp_path / "x.npy", "--output", tmp_path / "z.npy",
            check=False)
    assert r.returncode == 2
    assert "1 output file for a model of 2 outputs ('r', 'y'): give one for each" in r.stderr
    assert not (tmp_path / "z.npy").exists()
    # The same file twice is refused before anything runs; bench times every output.
    r = cmd(binary, "run", paths[("r", "y")], "--input", tmp_path / "x.npy", "--output", tmp_path / "z.npy",
            "--output", tmp_path / "z.npy", check=False)
    assert r.returncode == 2 and "z.npy" in r.stderr
    b = json.loads(cmd(binary, "bench", paths[("r", "y")], "--shape", "1,2,9,7", "--runs", 3, "--seconds", 0,
                       "--json").stdout)
    assert b["runs"] >= 3


def test_run_reads_what_numpy_writes(models, tmp_path):
    # float64 (NumPy's default), integers and a non-contiguous array saved in C order all read as
    # float32 values of the same numbers.
    _, paths = models
    x = np.arange(40, dtype=np.float64).reshape(5, 8) / 7
    outputs = []
    for i, arr in enumerate([x, x.astype(np.float32), np.asfortranarray(x)]):
        np.save(tmp_path / f"x{i}.npy", np.ascontiguousarray(arr) if i == 2 else arr)
        cmd(RUNNER, "run", paths["mlp"], "--input", tmp_path / f"x{i}.npy", "--output", tmp_path / f"y{i}.npy")
        outputs.append(np.load(tmp_path / f"y{i}.npy"))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])
    np.save(tmp_path / "ints.npy", np.arange(16, dtype=np.int16).reshape(2, 8))
    cmd(RUNNER, "run", paths["mlp"], "--input", tmp_path / "ints.npy", "--output", tmp_path / "yi.npy")
    np.testing.assert_allclose(np.load(tmp_path / "yi.npy"),
                               ref.run_ort_any(paths["mlp"], np.arange(16, dtype=np.float32).reshape(2, 8), tmp_path),
                               rtol=1e-5, atol=1e-5)


def test_run_errors_name_the_file_and_the_option(models, tmp_path):
    _, paths = models
    np.save(tmp_path / "wrong.npy", np.zeros((2, 9), dtype=np.float32))
    r = cmd(RUNNER, "run", paths["mlp"], "--input", tmp_path / "wrong.npy", "--output", tmp_path / "y.npy",
            check=False)
    assert r.returncode == 2
    assert "wrong.npy: an array of shape [2, 9] does not fit the model's input [batch, 8]" in r.stderr
    assert not (tmp_path / "y.npy").exists()
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY\x01\x00junk")
    r = cmd(RUNNER, "run", paths["mlp"], "--input", tmp_path / "junk.npy", "--output", tmp_path / "y.npy",
            check=False)
    assert r.returncode == 2 and "junk.npy: " in r.stderr
    r = cmd(RUNNER, "run", paths["mlp"], "--input", tmp_path / "wrong.npy", check=False)
    assert r.returncode == 2 and "--input requires --output" in r.stderr
    # --data is for image classifiers: the message says what the model takes and what to use.
    r = cmd(RUNNER, "run", paths["image"], "--data", "/usr/share/datasets/fashion-mnist", check=False)
    assert r.returncode == 2
    assert "image.onnx: --data runs image classifiers" in r.stderr and "use --input and --output" in r.stderr
    # The output may not be the input.
    r = cmd(RUNNER, "run", paths["mlp"], "--input", tmp_path / "wrong.npy", "--output", tmp_path / "wrong.npy",
            check=False)
    assert r.returncode == 2 and "the input read" in r.stderr
    r = cmd(RUNNER, "train", check=False)
    assert r.returncode == 2 and "the commands are run and bench" in r.stderr


@pytest.mark.parametrize("binary", [RUNNER, LOWBIT])
def test_bench_reports_percentiles_throughput_and_a_profile(models, binary):
    _, paths = models
    r = json.loads(cmd(binary, "bench", paths["image"], "--batch", 4, "--runs", 7, "--seconds", 0,
                       "--warmup", 1, "--json").stdout)
    assert r["batch"] == 4 and r["threads"] == 1 and r["runs"] == 7
    assert 0 < r["latency_ms_min"] <= r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
    assert r["images_per_second"] == pytest.approx(4000 / r["latency_ms_mean"], rel=1e-3)
    ops = [p["op"] for p in r["profile"]]
    assert ops == ["Conv", "MaxPool"]  # the Relu runs in the convolution's kernel
    assert sum(p["share"] for p in r["profile"]) == pytest.approx(1, abs=2e-3)
    assert r["profile"][0]["kernel"].startswith("conv2d_f32_") and r["profile"][0]["kernel"].endswith("+clamp")
    text = cmd(binary, "bench", paths["image"], "--shape", "2,2,9,7", "--runs", 3, "--seconds", 0).stdout
    assert "batch 2" in text and "p50" in text and "Conv" in text
    bad = cmd(binary, "bench", paths["image"], "--shape", "2,3,9,7", check=False)
    assert bad.returncode == 2 and "--shape 2,3,9,7: the model's input is B,2,9,7" in bad.stderr


def fully_convolutional(rng):
    """[batch, 2, h, w] -> Conv 3x3 (pads 1) -> Relu -> Resize x2 -> [batch, 3, 2h, 2w]: the height
    and width are known only at run time."""
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Resize", ["r", "", "sc"], ["y"])],
        "fcn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "h2", "w2"])],
        [numpy_helper.from_array(rng.normal(size=(3, 2, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_image_sizes_unknown_until_run_time(tmp_path):
    path = save(fully_convolutional(np.random.default_rng(3)), tmp_path / "fcn.onnx")
    for shape in [(1, 2, 7, 5), (3, 2, 16, 12)]:
        x = np.random.default_rng(shape[2]).normal(size=shape).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        cmd(RUNNER, "run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
        expected = ref.run_ort_any(path, x, tmp_path)
        assert expected.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-5)
    r = json.loads(cmd(RUNNER, "bench", path, "--shape", "1,2,32,24", "--runs", 2, "--seconds", 0, "--json").stdout)
    assert [p["op"] for p in r["profile"]] == ["Conv", "Resize"]  # Relu fused into the Conv
    r = cmd(RUNNER, "bench", path, check=False)
    assert r.returncode == 2 and "dimension 2 is not fixed by the file" in r.stderr and "--shape" in r.stderr


def test_lowbit_run_needs_no_libtorch():
    libraries = subprocess.run(["ldd", str(RUNNER)], capture_output=True, text=True, check=True).stdout
    assert "libtorch" not in libraries and "libc10" not in libraries
