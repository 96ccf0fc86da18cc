"""Faults a new user meets, through the `lowbit` command as they would (docs/reliability.md): a full
disk and a file-size limit while writing, killed runs, flipped bits in checkpoints and exports, runs
overwritten or written twice at once, silent conversions of options, configs and labels, data sets
that do not fit a model, and the messages and exit codes of bad arguments."""
import ctypes
import ctypes.util
import gzip
import json
import math
import os
import resource
import signal
import struct
import subprocess
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import lowbit
import onnx_reference as ref

LOWBIT = ref.ROOT / "build" / "lowbit"
SMALL = "blocks: [4, 0]\nhidden: 0\nbatch_size: 64\n"


def lowbit_cmd(*args, preexec_fn=None):
    return subprocess.run([str(LOWBIT), *map(str, args)], capture_output=True, text=True,
                          preexec_fn=preexec_fn)


def train(work, out, *extra, data=None):
    return lowbit_cmd("train", "--model", "bnn", "--config", work / "small.yaml", "--data",
                      data or work / "data", "--out", out, "--no-progress", *extra)


def assert_error(result, *parts):
    """Exit 2, and one `lowbit: error:` line that contains every part."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("lowbit: error: "), result.stderr
    for part in parts:
        assert str(part) in line, (part, result.stderr)


def temporaries(directory):
    return sorted(p.name for p in Path(directory).iterdir() if ".tmp" in p.name)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    ref.subset(root / "data", 600, 200)
    (root / "small.yaml").write_text(SMALL)
    return root


@pytest.fixture(scope="module")
def run(work):
    """A trained run of 2 epochs and its export; tests copy them before changing them."""
    out = work / "run"
    result = train(work, out, "--epochs", 2)
    assert result.returncode == 0, result.stderr
    export = lowbit_cmd("export", "--checkpoint", out, "--out", work / "run.onnx")
    assert export.returncode == 0, export.stderr
    return out


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size_bytes, read_only=False) -> a tmpfs mounted under tmp_path (skip where not root)."""
    mounts = []

    def mount(size, read_only=False):
        target = tmp_path / f"mnt{len(mounts)}"
        target.mkdir()
        flags = 1 if read_only else 0  # MS_RDONLY
        if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags,
                       f"size={size}".encode()) != 0:
            pytest.skip(f"cannot mount a tmpfs here ({os.strerror(ctypes.get_errno())})")
        mounts.append(target)
        return target

    yield mount
    for m in mounts:
        _libc.umount2(str(m).encode(), 2)  # MNT_DETACH


def copy_run(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


# ---- 1. full disks, file-size limits, killed runs ------------------------------------------------

def test_a_full_disk_while_checkpointing_is_an_error_and_keeps_the_previous_checkpoint(work, run, tmpfs):
    size = (run / "checkpoint.pt").stat().st_size
    # Room for the run, but not for a second checkpoint beside the first while it is replaced.
    disk = tmpfs(size + size // 2 + 64 * 1024)
    out = copy_run(run, disk / "run")
    before = (out / "checkpoint.pt").read_bytes()
    result = train(work, out, "--epochs", 3, "--resume")
    assert_error(result, f"{out}/checkpoint.pt: no space left on device")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert temporaries(out) == []
    assert lowbit_cmd("eval", "--checkpoint", out, "--data", work / "data").returncode == 0
    # Exports from Python: an OSError naming the file, nothing left behind.
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - 4096))
    with pytest.raises(OSError, match=f"{disk}/m.onnx: no space left on device"):
        lowbit.export_onnx(out, disk / "m.onnx")
    assert temporaries(disk) == []


def test_a_file_size_limit_is_an_error_not_a_signal(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    before = (out / "checkpoint.pt").read_bytes()

    def limit_to(size):  # the default SIGXFSZ (which kills the process) and a file-size limit
        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        return limit

    limit = limit_to(len(before) // 2)

    result = lowbit_cmd("train", "--model", "bnn", "--config", work / "small.yaml", "--data",
                        work / "data", "--out", out, "--no-progress", "--epochs", 3, "--resume",
                        preexec_fn=limit)
    assert_error(result, f"{out}/checkpoint.pt: file too large")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert temporaries(out) == []
    export = lowbit_cmd("export", "--checkpoint", out, "--out", tmp_path / "m.onnx",
                        preexec_fn=limit_to((work / "run.onnx").stat().st_size // 2))
    assert_error(export, f"{tmp_path}/m.onnx: file too large")
    assert temporaries(tmp_path) == []


def test_temporaries_of_killed_runs_are_removed_and_the_run_resumes(work, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([str(LOWBIT), "train", "--model", "bnn", "--config", work / "small.yaml",
                                "--data", work / "data", "--out", out, "--no-progress", "--epochs", "200"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    # What a kill during a write leaves (the writer's name, a dead process), and lowbit 0.1's name.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / f".checkpoint.pt.tmp-{dead.pid}-3").write_bytes(b"partial")
    (out / "checkpoint.pt.tmp").write_bytes(b"partial")
    held = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"]
    # The checkpoint holds `held` epochs, or one more when the kill fell between it and the log.
    resumed = train(work, out, "--epochs", held + 1, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert temporaries(out) == []
    assert json.loads((out / "metrics.json").read_text())["epochs"] == held + 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == list(range(1, held + 2))


# ---- 2. checksums --------------------------------------------------------------------------------

def flip_in_tensor_data(path, dst):
    """A copy of a checkpoint with one bit flipped in the first tensor's data (located by zipfile)."""
    data = bytearray(Path(path).read_bytes())
    info = next(i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename and i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x04
    Path(dst).write_bytes(bytes(data))
    return dst


def test_a_flipped_bit_in_a_checkpoint_is_refused_by_eval_export_and_resume(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    flip_in_tensor_data(run / "checkpoint.pt", out / "checkpoint.pt")
    file = out / "checkpoint.pt"
    assert_error(lowbit_cmd("eval", "--checkpoint", out, "--data", work / "data"), f"{file}: corrupt file")
    assert_error(lowbit_cmd("export", "--checkpoint", out, "--out", tmp_path / "m.onnx"),
                 f"{file}: corrupt file")
    assert_error(train(work, out, "--epochs", 3, "--resume"), f"{file}: corrupt file")
    with pytest.raises(ValueError, match="corrupt file"):
        lowbit.export_onnx(out, tmp_path / "m.onnx")


def test_exports_carry_a_crc32_that_onnx_keeps_and_the_engine_checks(work, run, tmp_path):
    data = (work / "run.onnx").read_bytes()
    model = onnx.load_from_string(data)
    props = {p.key: p.value for p in model.metadata_props}
    # The trailer: metadata_props entry 'lowbit.crc32' = CRC-32 (zlib's) of every byte before it.
    trailer = b"\x72\x18\x0a\x0clowbit.crc32\x12\x08" + props["lowbit.crc32"].encode()
    assert data.endswith(trailer)
    assert int(props["lowbit.crc32"], 16) == zlib.crc32(data[: -len(trailer)])
    onnx.checker.check_model(model)
    # A flipped bit in a weight: the engine refuses the file.
    weights = max(model.graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    at = data.index(weights) + len(weights) // 2
    bad = bytearray(data)
    bad[at] ^= 0x01
    (tmp_path / "bad.onnx").write_bytes(bytes(bad))
    assert_error(lowbit_cmd("run", tmp_path / "bad.onnx", "--data", work / "data"),
                 f"{tmp_path}/bad.onnx: corrupt file: its checksum")


# ---- 3, 4. existing runs, locks, --epochs on resume ----------------------------------------------

def test_a_run_is_not_replaced_without_resume_or_overwrite(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    log = (out / "metrics.jsonl").read_text()
    assert_error(train(work, out, "--epochs", 1), f"{out}: holds a run", "--resume", "--overwrite")
    assert (out / "metrics.jsonl").read_text() == log
    result = train(work, out, "--epochs", 1, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_two_trainings_into_one_directory_the_second_is_refused(work, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([str(LOWBIT), "train", "--model", "bnn", "--config", work / "small.yaml",
                              "--data", work / "data", "--out", out, "--no-progress", "--epochs", "500"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert_error(train(work, out, "--epochs", 1, "--overwrite"),
                     f"{out}: another lowbit train is writing to this run directory")
    finally:
        first.kill()
        first.wait()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == list(range(1, len(lines) + 1))


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    assert_error(train(work, out, "--epochs", 1, "--resume"),
                 "--epochs 1: ", "already holds 2 epochs")
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


# ---- 5. silent conversions -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-5", "18446744073709551616", "1e3", "abc"])
def test_seeds_outside_uint64_are_errors(work, tmp_path, seed):
    assert_error(train(work, tmp_path / "r", "--seed", seed), "--seed: ")
    assert not (tmp_path / "r").exists()


def test_the_largest_seed_is_kept_exactly(work, tmp_path):
    result = train(work, tmp_path / "r", "--epochs", 1, "--seed", 2**64 - 1)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["seed"] == 2**64 - 1


@pytest.mark.parametrize("config, message", [
    ("hidden: -3\n", "hidden must be >= 0"),
    ("blocks: [8, -1]\n", "blocks: -1 is not a channel count"),
    ("epochs: 3\nbatch_size: 8\nepochs: 4\n", "duplicate key 'epochs' (line 3)"),
    ("learning_rate: .inf\n", "learning_rate must be positive and finite"),
    ("activation: tanh\n", "activation must be relu or none"),
])
def test_config_values_that_would_build_another_network_are_errors(work, tmp_path, config, message):
    (tmp_path / "c.yaml").write_text(config)
    result = lowbit_cmd("train", "--model", "bnn", "--config", tmp_path / "c.yaml", "--data",
                        work / "data", "--out", tmp_path / "r")
    assert_error(result, f"{tmp_path}/c.yaml: {message}")


def with_label(work, tmp_path, label, split="train"):
    """A copy of the data set with label 17 of `split` set to `label`."""
    data = tmp_path / "data"
    data.mkdir()
    for p in (work / "data").iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    labels = bytearray((data / f"{split}-labels-idx1-ubyte").read_bytes())
    labels[8 + 17] = label
    (data / f"{split}-labels-idx1-ubyte").write_bytes(bytes(labels))
    return data


def test_a_stray_label_is_said_or_refused_with_num_classes(work, tmp_path):
    data = with_label(work, tmp_path, 200)
    result = train(work, tmp_path / "r", "--epochs", 1, data=data)
    assert result.returncode == 0, result.stderr
    assert "lowbit: warning: " in result.stderr
    assert "the labels run from 0 to 200 but 190 of those 201 classes have no training image" in result.stderr
    assert_error(train(work, tmp_path / "r2", "--epochs", 1, "--num-classes", 10, data=data),
                 f"{data}/train-labels-idx1-ubyte: label 200 (at index 17) is outside the 10 classes")
    result = train(work, tmp_path / "r3", "--epochs", 1, "--num-classes", 12)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert lowbit_cmd("summary", "--model", "bnn").returncode == 0


def test_a_plain_file_and_a_different_gz_twin_are_an_error(work, run, tmp_path):
    data = with_label(work, tmp_path, 3, split="t10k")
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress((work / "data" / "t10k-labels-idx1-ubyte").read_bytes()))
    assert_error(lowbit_cmd("eval", "--checkpoint", run, "--data", data),
                 f"{data}/t10k-labels-idx1-ubyte: differs from {data}/t10k-labels-idx1-ubyte.gz")


# ---- 6. a checkpoint or model against a data set that does not fit it ----------------------------

@pytest.fixture(scope="module")
def small_images(work):
    data = work / "data14"
    data.mkdir()
    for split in ("train", "t10k"):
        images = ref.read_idx(work / "data" / f"{split}-images-idx3-ubyte")[:, ::2, ::2]
        ref.write_idx(data / f"{split}-images-idx3-ubyte", images)
        ref.write_idx(data / f"{split}-labels-idx1-ubyte", ref.read_idx(work / "data" / f"{split}-labels-idx1-ubyte"))
    return data


def test_image_sizes_that_differ_are_named_everywhere(work, run, small_images, tmp_path):
    message = f"{small_images}: image sizes differ: the model "
    assert_error(lowbit_cmd("eval", "--checkpoint", run, "--data", small_images), message, "28x28", "14x14")
    assert_error(lowbit_cmd("run", work / "run.onnx", "--data", small_images), message)
    assert_error(lowbit_cmd("run", work / "run.onnx", "--data", small_images, "--checkpoint", run), message)
    out = copy_run(run, tmp_path / "run")
    assert_error(train(work, out, "--epochs", 3, "--resume", data=small_images), message)


def test_labels_beyond_the_models_classes_are_named(work, run, tmp_path):
    data = with_label(work, tmp_path, 12, split="t10k")
    for args in (("eval", "--checkpoint", run, "--data", data),
                 ("run", work / "run.onnx", "--data", data)):
        assert_error(lowbit_cmd(*args), "label 12 (at index 17) is outside the 10 classes",
                     "class counts differ")


def test_run_checkpoint_of_a_run_with_other_classes_is_named(work, run, tmp_path):
    other = tmp_path / "twelve"
    assert train(work, other, "--epochs", 1, "--num-classes", 12).returncode == 0
    assert_error(lowbit_cmd("run", work / "run.onnx", "--data", work / "data", "--checkpoint", other),
                 f"{other / 'checkpoint.pt'}: the checkpoint's model has 12 classes, {work / 'run.onnx'} has 10 outputs")


# ---- 7. messages and exit codes ------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["foo"], "unknown command 'foo'; the commands are train, eval, summary, export, run and bench"),
    ([], "no command given; the commands are train, eval, summary, export, run and bench"),
    (["train", "--model", "bnn", "--out", "x", "--epochs", "abc"], "--epochs: 'abc' is not an integer"),
    (["train", "--model", "bnn", "--out", "x", "--epochs", "0"], "--epochs: 0 is not in 1..1000000"),
    (["train", "--model", "bnn"], "--out is required"),
    (["run", "m.onnx", "--threads", "x"], "--threads: 'x' is not an integer"),
    (["eval", "--checkpoint", "/nonexistent"], "/nonexistent: no such checkpoint"),
])
def test_argument_errors_exit_2_with_the_prefix(args, message):
    assert_error(lowbit_cmd(*args), message)


def test_help_still_exits_0():
    result = lowbit_cmd("train", "--help")
    assert result.returncode == 0 and "--overwrite" in result.stdout and "--num-classes" in result.stdout


def test_model_files_that_are_directories_or_empty(work, tmp_path):
    assert_error(lowbit_cmd("run", tmp_path, "--data", work / "data"), f"{tmp_path}: is a directory")
    (tmp_path / "e.onnx").write_bytes(b"")
    assert_error(lowbit_cmd("run", tmp_path / "e.onnx", "--data", work / "data"),
                 f"{tmp_path}/e.onnx: empty file (0 bytes), not an ONNX model")


def test_a_read_only_out_is_found_before_training(work, tmpfs):
    disk = tmpfs(1 << 20, read_only=True)
    started = time.time()
    assert_error(train(work, disk, "--epochs", 100), f"{disk}: cannot write in the directory: read-only file system")
    assert_error(train(work, disk / "sub", "--epochs", 100), f"{disk}/sub: cannot create the directory")
    assert time.time() - started < 30  # refused before any epoch, not after


# ---- 8. non-finite ranges in every range operator ------------------------------------------------

RANGE_OPS = {
    "vars": lambda x, lo, hi: lowbit.fake_quant_with_min_max_vars(x, torch.tensor(lo), torch.tensor(hi)),
    "args": lambda x, lo, hi: lowbit.fake_quant_with_min_max_args(x, lo, hi),
    "per_channel": lambda x, lo, hi: lowbit.fake_quant_with_min_max_vars_per_channel(
        x, torch.full((x.shape[-1],), lo), torch.full((x.shape[-1],), hi)),
    "vars_gradient": lambda x, lo, hi: lowbit.fake_quant_with_min_max_vars_gradient(
        torch.ones_like(x), x, torch.tensor(lo), torch.tensor(hi)),
    "pow2": lambda x, lo, hi: lowbit.fake_quant_pow2(x, torch.tensor(lo), torch.tensor(hi)),
    "pow2_range": lambda x, lo, hi: lowbit.pow2_range(torch.tensor(lo), torch.tensor(hi)),
}


@pytest.mark.parametrize("lo, hi", [(-1.0, math.inf), (-math.inf, 1.0), (math.nan, 1.0), (-1.0, math.nan),
                                    (math.inf, math.inf), (-math.inf, math.inf)])
@pytest.mark.parametrize("op", sorted(RANGE_OPS))
def test_a_non_finite_range_is_rejected_like_a_nan_one(op, lo, hi):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="min and max must be finite"):
        RANGE_OPS[op](x, lo, hi)


# ---- found by a review of the first version --------------------------------------------------------

def test_overwrite_removes_the_old_run_only_once_the_new_one_is_ready(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    before = sorted(p.name for p in out.iterdir())
    assert_error(train(work, out, "--epochs", 1, "--overwrite", data=tmp_path / "none"), "does not exist")
    (tmp_path / "pools.yaml").write_text("blocks: [4, 0, 0, 0, 0, 0, 0]\nhidden: 0\n")
    assert_error(lowbit_cmd("train", "--model", "bnn", "--config", tmp_path / "pools.yaml", "--data",
                            work / "data", "--out", out, "--overwrite"),
                 f"{tmp_path}/pools.yaml (recipe bnn): its network does not build for 28x28 images",
                 "too many pools")
    assert sorted(p.name for p in out.iterdir()) == before
    assert_error(train(work, out, "--epochs", 1, "--overwrite", "--resume"), "exclude each other")


def test_a_failed_training_leaves_no_directory_it_made(work, tmp_path):
    assert_error(train(work, tmp_path / "new", "--epochs", 1, data=tmp_path / "none"), "does not exist")
    assert not (tmp_path / "new").exists()


def test_outputs_that_are_inputs_are_refused(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    checkpoint = (out / "checkpoint.pt").read_bytes()
    assert_error(lowbit_cmd("export", "--checkpoint", out, "--out", out / "checkpoint.pt"),
                 f"{out}/checkpoint.pt: is the checkpoint read")
    assert_error(lowbit_cmd("eval", "--checkpoint", out, "--data", work / "data", "--logits",
                            out / "checkpoint.pt"), "is the model or checkpoint read")
    assert_error(lowbit_cmd("eval", "--checkpoint", out, "--data", work / "data", "--logits",
                            work / "data" / "t10k-labels-idx1-ubyte"), "is a file of the data set")
    model = tmp_path / "m.onnx"
    model.write_bytes((work / "run.onnx").read_bytes())
    assert_error(lowbit_cmd("run", model, "--data", work / "data", "--logits", model),
                 f"{model}: is the model or checkpoint read")
    assert (out / "checkpoint.pt").read_bytes() == checkpoint
    assert model.read_bytes() == (work / "run.onnx").read_bytes()


@pytest.mark.parametrize("option", ["--config", "--data", "--out"])
def test_empty_paths_are_errors_not_defaults(work, tmp_path, option):
    args = {"--config": work / "small.yaml", "--data": work / "data", "--out": tmp_path / "r"}
    args[option] = ""
    result = lowbit_cmd("train", "--model", "bnn", *[x for kv in args.items() for x in kv])
    assert_error(result, f"{option}: no path given (empty)")


def test_integers_are_decimal_whatever_their_leading_zeros(work, tmp_path):
    result = train(work, tmp_path / "r", "--epochs", "010")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["epochs"] == 10
    (tmp_path / "c.yaml").write_text(SMALL + "epochs: 010\n")
    result = lowbit_cmd("train", "--model", "bnn", "--config", tmp_path / "c.yaml", "--data",
                        work / "data", "--out", tmp_path / "r2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r2" / "metrics.json").read_text())["epochs"] == 10
    (tmp_path / "h.yaml").write_text("epochs: 0x10\n")
    assert_error(lowbit_cmd("summary", "--model", "bnn", "--config", tmp_path / "h.yaml"),
                 "epochs: '0x10' is not a decimal integer")


def test_resume_keeps_the_runs_length_and_says_when_it_changes(work, run, tmp_path):
    out = copy_run(run, tmp_path / "run")
    result = train(work, out, "--resume")  # no --epochs: the run's own 2, not the recipe's 15
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    result = train(work, out, "--resume", "--epochs", 3)
    assert result.returncode == 0, result.stderr
    assert "lowbit: warning: --epochs 3: " in result.stderr and "was started for 2 epochs" in result.stderr


def test_run_and_eval_need_only_the_test_split(work, run, tmp_path):
    data = tmp_path / "test-only"
    data.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes((work / "data" / name).read_bytes())
    full = json.loads(lowbit_cmd("run", work / "run.onnx", "--data", work / "data").stdout)
    alone = lowbit_cmd("run", work / "run.onnx", "--data", data)
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["test_accuracy"] == full["test_accuracy"]
    result = lowbit_cmd("eval", "--checkpoint", run, "--data", data)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("clip", [math.nan, -1.0])
def test_a_clip_value_that_zeroes_every_gradient_is_an_error(work, tmp_path, clip):
    x = torch.randn(8, requires_grad=True)
    for op in (lowbit.ste_sign, lowbit.ste_heaviside, lowbit.magnitude_aware_sign, lowbit.ste_tern):
        with pytest.raises(ValueError, match="clip_value must be a number >= 0 or None"):
            op(x, clip_value=clip)
    (tmp_path / "c.yaml").write_text(f"kernel_quantizer: ste_sign(clip_value={clip})\n")
    assert_error(lowbit_cmd("summary", "--model", "bnn", "--config", tmp_path / "c.yaml"),
                 "kernel_quantizer: quantizer ste_sign: option clip_value must be a number >= 0 "
                 "or none, got " + ("nan" if math.isnan(clip) else "-1"))


def test_an_export_through_a_symlink_replaces_its_target(work, run, tmp_path):
    target = tmp_path / "target.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    assert lowbit_cmd("export", "--checkpoint", run, "--out", link).returncode == 0
    assert link.is_symlink()
    assert target.read_bytes() == (work / "run.onnx").read_bytes()


def test_python_paths_with_a_nul_are_refused(run, tmp_path):
    with pytest.raises(ValueError, match="out: a path with a NUL"):
        lowbit.export_onnx(run, f"{tmp_path}/a\0b.onnx")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_no_temporary_file(run, tmp_path):
    """SIGINT while `eval --logits` writes (it creates, fills, flushes and renames a temporary
    file): the temporary file goes with the process."""
    data = tmp_path / "test10k"  # the whole Fashion-MNIST test split: 400 KB of logits
    data.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes(gzip.decompress((ref.FASHION / f"{name}.gz").read_bytes()))
    outs = tmp_path / "out"
    outs.mkdir()
    caught = 0
    for attempt in range(5):
        p = subprocess.Popen([str(LOWBIT), "eval", "--checkpoint", run, "--data", data, "--logits",
                              outs / f"l{attempt}.npy"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        while p.poll() is None:
            if temporaries(outs):
                p.send_signal(signal.SIGINT)
                caught += 1
                break
        p.wait()
        assert temporaries(outs) == []
    if caught == 0:
        pytest.skip("the write was never caught in progress")


def test_hand_edited_checkpoints_with_valid_crcs_are_checked(work, run, tmp_path):
    """torch.jit rewrites a checkpoint with new values and valid CRCs: what it says must still fit."""
    edits = {
        "recipe": (lambda m: setattr(m, "recipe", m.recipe.replace("blocks: [4, 0]", "blocks: [6, 0]")),
                   "the weights do not fit the checkpoint's recipe: 0.weight has shape [4, 1, 3, 3], "
                   "the recipe's network [6, 1, 3, 3]"),
        "height": (lambda m: setattr(m, "height", 10**9), "'height' is 1000000000, outside the 1..65536"),
        "mean": (lambda m: setattr(m, "input_mean", torch.tensor([math.inf], dtype=torch.float64)),
                 "input_mean/input_std are not a valid standardisation"),
        "channels": (lambda m: setattr(m, "channels", 3),
                     "input_mean/input_std are not a valid standardisation of 3-channel images"),
        "epoch": (lambda m: setattr(m, "epoch", -1), "'epoch' is -1"),
    }
    for name, (edit, message) in edits.items():
        module = torch.jit.load(str(run / "checkpoint.pt"))
        edit(module)
        path = tmp_path / f"{name}.pt"
        module.save(str(path))
        assert_error(lowbit_cmd("eval", "--checkpoint", path, "--data", work / "data"), f"{path}: {message}")
