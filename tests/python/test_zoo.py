"""The model zoo (examples/zoo): every recipe builds for 28x28x1 and 32x32x3 images, trains, exports
in both formats and runs on the engine with LibTorch's predictions. Short runs of narrowed
networks (width_multiplier 0.25); docs/results.md has the full trainings."""
import json
import subprocess

import pytest

import onnx_reference as ref
from test_datasets import write_cifar10

LOWBIT = ref.ROOT / "build" / "lowbit"
ZOO = sorted(p.stem for p in (ref.ROOT / "examples" / "zoo").glob("*.yaml"))


def lowbit_cmd(*args, check=True):
    return subprocess.run([str(LOWBIT), *map(str, args)], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo")
    config = work / "short.yaml"
    config.write_text("epochs: 1\nbatch_size: 50\nwidth_multiplier: 0.25\n")
    return {
        "28x28x1": ref.subset(work / "fashion", train=300, test=100),
        "32x32x3": write_cifar10(work / "cifar", train=300, test=100),
    }, config


def test_the_zoo_is_there():
    assert ZOO == ["birealnet18", "bnn-int8-io", "cnv-w1a1", "cnv-w2a2", "lfc-w1a1", "quicknet-small"]


@pytest.mark.parametrize("shape", ["28x28x1", "32x32x3"])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_recipe_trains_exports_and_runs_on_the_engine(datasets, name, shape, tmp_path):
    data_sets, config = datasets
    data = data_sets[shape]
    out = tmp_path / "run"
    trained = json.loads(lowbit_cmd("train", "--model", name, "--config", config, "--data", data,
                                    "--out", out, "--no-progress").stdout)
    assert 0 <= trained["test_accuracy"] <= 1
    for fmt in ("qonnx", "standard"):
        model = tmp_path / f"{name}-{fmt}.onnx"
        lowbit_cmd("export", "--checkpoint", out, "--out", model, "--format", fmt)
        engine = json.loads(lowbit_cmd("run", model, "--data", data, "--checkpoint", out).stdout)
        assert engine["same_predictions"] >= 0.98, (fmt, engine)


@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
def test_bnn_int8_io_runs_on_integer_and_binary_kernels_only(datasets, fmt, tmp_path):
    data = datasets[0]["28x28x1"]
    config = tmp_path / "int8-io.yaml"
    # Fake quantization from the first step, so that the 8-bit ends are trained as integers.
    config.write_text("epochs: 2\nbatch_size: 50\nquant_delay: 0\n")
    out = tmp_path / "run"
    lowbit_cmd("train", "--model", "bnn-int8-io", "--config", config, "--data", data, "--out", out,
               "--no-progress")
    parameters = json.loads((out / "integer-parameters.json").read_text())
    # The two 8-bit layers, their inputs on an 8-bit power-of-2 grid (the classifier's quantized
    # after the binary dense layer's batch norm).
    assert [l["type"] for l in parameters["layers"]] == ["conv2d", "linear"]
    for layer in parameters["layers"]:
        assert layer["input"]["bits"] == 8 and layer["weight"]["bits"] == 8, layer
    model = tmp_path / f"int8-io-{fmt}.onnx"
    lowbit_cmd("export", "--checkpoint", out, "--out", model, "--format", fmt)
    engine = json.loads(lowbit_cmd("run", model, "--data", data, "--checkpoint", out).stdout)
    assert engine["same_predictions"] >= 0.98, engine
    kernels = engine["kernels"]
    assert not any("f32" in k and ("conv" in k or "gemm" in k or "matmul" in k) for k in kernels), kernels
    for prefix in ("int8_conv2d_", "binary_conv2d_", "binary_gemm_", "int8_gemm_"):
        assert any(k.startswith(prefix) for k in kernels), (prefix, kernels)
