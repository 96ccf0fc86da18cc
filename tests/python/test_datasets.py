"""The lowbit command on CIFAR-style binary files and folders of images: training with augmentation,
per-channel standardisation stored and exported, evaluation, the engine against LibTorch, and the
errors users meet."""
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

import onnx_reference as ref

LOWBIT = ref.ROOT / "build" / "lowbit"
SMALL = "blocks: [8, 0, 16, 0]\nhidden: 0\nepochs: 1\nbatch_size: 32\n"


def lowbit_cmd(*args, check=True):
    return subprocess.run([str(LOWBIT), *map(str, args)], capture_output=True, text=True, check=check)


def colour_fashion(n, split):
    """Fashion-MNIST images as 32x32 RGB whose channels differ in brightness, and their labels."""
    prefix = "train" if split == "train" else "t10k"
    images = ref.read_idx(ref.FASHION / f"{prefix}-images-idx3-ubyte.gz")[:n].astype(np.int32)
    labels = ref.read_idx(ref.FASHION / f"{prefix}-labels-idx1-ubyte.gz")[:n]
    padded = np.zeros((n, 32, 32), np.int32)
    padded[:, 2:30, 2:30] = images
    rgb = np.stack([padded, padded // 2, 255 - padded], axis=1).astype(np.uint8)
    return rgb, labels


def write_cifar10(directory, train=600, test=200):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in (
        ("data_batch_1.bin", colour_fashion(train // 2, "train")),
        ("test_batch.bin", colour_fashion(test, "test")),
    ):
        records = np.concatenate([y[:, None], x.reshape(len(y), -1)], axis=1).astype(np.uint8)
        (directory / name).write_bytes(records.tobytes())
    x, y = colour_fashion(train, "train")
    records = np.concatenate([y[train // 2 :, None], x[train // 2 :].reshape(train - train // 2, -1)], axis=1)
    (directory / "data_batch_2.bin").write_bytes(records.astype(np.uint8).tobytes())
    return directory


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("cifar")
    data = write_cifar10(work / "data")
    config = work / "small.yaml"
    config.write_text(SMALL + "random_crop_padding: 2\nhorizontal_flip: true\n")
    out = work / "run"
    result = lowbit_cmd("train", "--model", "bnn", "--config", config, "--data", data, "--out", out, "--no-progress")
    return work, data, out, json.loads(result.stdout)


def test_cifar_trains_and_evaluates_as_it_trained(cifar_run):
    work, data, out, trained = cifar_run
    assert trained["test_accuracy"] > 0.3  # 10 classes: well above chance after one short epoch
    evaluated = json.loads(lowbit_cmd("eval", "--checkpoint", out, "--data", data).stdout)
    assert evaluated["test_accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["loader_wait_seconds"] >= 0
    summary = lowbit_cmd("summary", "--model", "bnn", "--config", work / "small.yaml", "--channels", "3",
                         "--height", "32", "--width", "32").stdout
    assert "Total params" in summary or "params" in summary.lower()


@pytest.mark.skipif(not ref.node_runner_available(), reason="onnxruntime-node is not installed")
@pytest.mark.parametrize("fmt", ["standard", "qonnx"])
def test_cifar_export_standardises_each_channel_as_training_did(cifar_run, fmt):
    work, data, out, _ = cifar_run
    model = work / f"cifar-{fmt}.onnx"
    lowbit_cmd("export", "--checkpoint", out, "--out", model, "--format", fmt)
    logits = work / f"logits-{fmt}.npy"
    lowbit_cmd("eval", "--checkpoint", out, "--data", data, "--logits", logits)
    torch_logits = np.load(logits)
    x, _ = colour_fashion(200, "test")
    ort_logits = ref.run_ort(model, x, work) if fmt == "standard" else None
    if ort_logits is not None:
        np.testing.assert_allclose(ort_logits, torch_logits, atol=1e-3 * np.abs(torch_logits).max())
    engine = json.loads(lowbit_cmd("run", model, "--data", data, "--checkpoint", out).stdout)
    assert engine["same_predictions"] >= 0.99
    assert engine["test_accuracy"] == pytest.approx(engine["libtorch"]["test_accuracy"], abs=0.011)


def write_folders(root, sizes, mode="L", per_class=12):
    """Two classes (bright and dark squares) of PNG and JPEG images of the given sizes."""
    for split in ("train", "test"):
        for label, name in enumerate(("bright", "dark")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(label * 10 + len(split))
            for i in range(per_class):
                h, w = sizes[i % len(sizes)]
                base = 200 if name == "bright" else 40
                pixels = np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels).convert(mode)
                image.save(folder / (f"{i}.png" if i % 2 else f"{i}.jpg"))
    return root


def test_image_folders_resize_train_and_run_on_the_engine(tmp_path):
    data = write_folders(tmp_path / "photos", [(20, 24), (31, 17)])
    config = tmp_path / "small.yaml"
    config.write_text(SMALL.replace("batch_size: 32", "batch_size: 8"))
    out = tmp_path / "run"
    trained = json.loads(lowbit_cmd("train", "--model", "float", "--config", config, "--data", data,
                                    "--out", out, "--image-size", "16x12", "--epochs", "3").stdout)
    assert trained["test_accuracy"] == 1.0  # bright against dark
    evaluated = json.loads(lowbit_cmd("eval", "--checkpoint", out, "--data", data).stdout)
    assert evaluated["test_accuracy"] == 1.0
    model = tmp_path / "photos.onnx"
    lowbit_cmd("export", "--checkpoint", out, "--out", model)
    engine = json.loads(lowbit_cmd("run", model, "--data", data, "--checkpoint", out).stdout)
    assert engine["test_accuracy"] == 1.0 and engine["same_predictions"] == 1.0


def test_dataset_errors_name_the_option_or_file(tmp_path, cifar_run):
    _, cifar, _, _ = cifar_run
    r = lowbit_cmd("train", "--model", "bnn", "--data", cifar, "--out", tmp_path / "a", "--image-size", "28",
                   check=False)
    assert r.returncode == 2 and "--image-size 28x28" in r.stderr and "only image folders" in r.stderr
    r = lowbit_cmd("train", "--model", "bnn", "--data", cifar, "--out", tmp_path / "a", "--image-size", "0x4",
                   check=False)
    assert r.returncode == 2 and "--image-size '0x4'" in r.stderr
    mixed = write_folders(tmp_path / "mixed", [(8, 8)])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "test" / "dark" / "rgb.png")
    r = lowbit_cmd("train", "--model", "bnn", "--data", mixed, "--out", tmp_path / "b", check=False)
    assert r.returncode == 2 and "rgb.png" in r.stderr and "mixed channel counts" in r.stderr
    (mixed / "test" / "dark" / "rgb.png").write_bytes(b"\x89PNG broken")
    r = lowbit_cmd("train", "--model", "bnn", "--data", mixed, "--out", tmp_path / "b", check=False)
    assert r.returncode == 2 and "rgb.png: cannot decode the image" in r.stderr
    empty = tmp_path / "nothing"
    empty.mkdir()
    r = lowbit_cmd("train", "--model", "bnn", "--data", empty, "--out", tmp_path / "c", check=False)
    assert r.returncode == 2 and "no data set found" in r.stderr and not (tmp_path / "c").exists()
