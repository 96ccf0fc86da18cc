"""`lowbit train` data-parallel on c10d (gloo, processes on loopback), through the command: two ranks
give the weights of one process on the same global batch, torchrun starts it, resume works across
world sizes, and one rank's error ends the others with messages naming what failed."""
import json
import os
import socket
import subprocess
import time

import pytest
import torch

import onnx_reference as ref

LOWBIT = ref.ROOT / "build" / "lowbit"

# No batch norm and no dropout: each rank would normalise (or drop) within its own part of the
# batch, and the ranks would agree with each other but not with one process.
CONFIG = """recipe: float
epochs: 2
batch_size: 100
schedule: constant
layers:
  - {conv: 6, quantized: false}
  - relu
  - max_pool: 2
  - flatten
  - {dense: 24}
  - relu
  - {dense: classes, quantized: false}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                        "MASTER_PORT")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def train_args(config, data, out, *more):
    return [str(LOWBIT), "train", "--config", str(config), "--data", str(data), "--out", str(out),
            "--no-progress", "--threads", "1", *map(str, more)]


def run_ranks(world, args_of_rank, timeout=300):
    """Starts `world` ranks with torchrun's variables; their (returncode, stdout, stderr)."""
    port = free_port()
    procs = [subprocess.Popen(args_of_rank(r), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=clean_env(RANK=r, WORLD_SIZE=world, LOCAL_RANK=r,
                                            LOCAL_WORLD_SIZE=world, MASTER_ADDR="127.0.0.1",
                                            MASTER_PORT=port))
             for r in range(world)]
    try:
        results = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def weights(run_dir):
    module = torch.jit.load(str(run_dir / "checkpoint.pt"))
    return {k: v for k, v in module.named_parameters() if k.startswith("model.")}


def assert_same_weights(a, b, atol=1e-5):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=1e-4, atol=atol), (k, (wa[k] - wb[k]).abs().max())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("distributed")
    data = ref.subset(w / "data", train=1000, test=300)
    config = w / "net.yaml"
    config.write_text(CONFIG)
    one = w / "one"
    subprocess.run(train_args(config, data, one), check=True, capture_output=True, env=clean_env())
    return w, data, config, one


def test_two_ranks_give_the_weights_of_one_process(work):
    w, data, config, one = work
    results = run_ranks(2, lambda r: train_args(config, data, w / "two"))
    for code, _, err in results:
        assert code == 0, err
    # Rank 0 speaks for the run and writes it; rank 1 prints nothing.
    printed = json.loads(results[0][1])
    assert printed["world_size"] == 2 and printed["epochs"] == 2
    assert results[1][1] == ""
    assert_same_weights(one, w / "two")
    # The metrics are those of the whole batches and the whole test set.
    lines = lambda d: [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    # (Within a sample: weights equal within rounding may still flip one borderline prediction.)
    for a, b in zip(lines(one), lines(w / "two")):
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1.01 / 300)
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"], abs=1.01 / 1000)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    final = json.loads((w / "two" / "metrics.json").read_text())
    assert final["world_size"] == 2
    confusion = json.loads((one / "metrics.json").read_text())["confusion"]
    assert sum(abs(x - y) for r1, r2 in zip(confusion, final["confusion"]) for x, y in zip(r1, r2)) <= 2


def test_three_ranks_on_batches_that_do_not_divide(work):
    # 1000 images in batches of 100, each shared 33/33/34: the same weights again.
    w, data, config, one = work
    for code, _, err in run_ranks(3, lambda r: train_args(config, data, w / "three")):
        assert code == 0, err
    assert_same_weights(one, w / "three")


def test_torchrun_starts_it(work):
    w, data, config, one = work
    # Debian 12's torchrun (PyTorch 1.13 on Python 3.11) fails on its default --redirects 0; any
    # other value works.
    r = subprocess.run(
        ["/usr/bin/python3", "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), "--redirects", "1", "--tee", "1", "--no_python",
         *train_args(config, data, w / "torchrun")],
        capture_output=True, text=True, env=clean_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"world_size": 2' in r.stdout
    assert_same_weights(one, w / "torchrun")


def test_resume_across_world_sizes(work):
    w, data, config, one = work
    # Epoch 1 on two ranks, epoch 2 in one process; and the other way round.
    a = w / "two-then-one"
    for code, _, err in run_ranks(2, lambda r: train_args(config, data, a, "--epochs", 1)):
        assert code == 0, err
    subprocess.run(train_args(config, data, a, "--resume", "--epochs", 2), check=True,
                   capture_output=True, env=clean_env())
    assert_same_weights(one, a)
    b = w / "one-then-three"
    subprocess.run(train_args(config, data, b, "--epochs", 1), check=True, capture_output=True,
                   env=clean_env())
    for code, _, err in run_ranks(3, lambda r: train_args(config, data, b, "--resume", "--epochs", 2)):
        assert code == 0, err
    assert_same_weights(one, b)


def test_a_binary_network_with_batch_norm_trains_on_two_ranks(work):
    w, data, _, _ = work
    results = run_ranks(2, lambda r: [str(LOWBIT), "train", "--model", "bnn", "--epochs", "1", "--data",
                                      str(data), "--out", str(w / "bnn"), "--no-progress", "--threads", "1"])
    for code, _, err in results:
        assert code == 0, err
    assert json.loads(results[0][1])["test_accuracy"] > 0.4
    # The averaged running statistics are in the checkpoint, and the model evaluates with them.
    evaluated = json.loads(subprocess.run([str(LOWBIT), "eval", "--checkpoint", str(w / "bnn"),
                                           "--data", str(data)], capture_output=True, text=True,
                                          check=True, env=clean_env()).stdout)
    assert evaluated["test_accuracy"] == pytest.approx(json.loads(results[0][1])["test_accuracy"], abs=1e-6)


def test_one_ranks_error_ends_every_rank(work):
    w, data, config, _ = work
    results = run_ranks(2, lambda r: train_args(config, data if r == 0 else w / "missing", w / "bad"),
                        timeout=120)
    assert results[1][0] == 2 and "missing: data set directory does not exist" in results[1][2]
    assert results[0][0] != 0 and "another rank failed to prepare the run" in results[0][2]
    assert not (w / "bad" / "checkpoint.pt").exists()


@pytest.mark.parametrize("env, message", [
    ({"RANK": "0"}, "WORLD_SIZE: not set, but RANK is"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2: must be below WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT: not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "port"},
     "MASTER_PORT='port': expected an integer in 1..65535"),
])
def test_bad_variables_are_errors_naming_them(work, env, message):
    w, data, config, _ = work
    r = subprocess.run(train_args(config, data, w / "env"), capture_output=True, text=True,
                       env=clean_env(**env), timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_a_rank_that_dies_while_training_ends_the_others(work):
    w, data, config, _ = work
    port = free_port()
    env = lambda r: clean_env(RANK=r, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    args = train_args(config, data, w / "killed", "--epochs", 1000, "--dist-timeout", 30)
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(r))
             for r in range(2)]
    # Once rank 0 has written an epoch, both are training: kill rank 1.
    deadline = time.time() + 120
    while not (w / "killed" / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (w / "killed" / "metrics.jsonl").exists(), "the ranks did not start training"
    procs[1].kill()
    _, err = procs[0].communicate(timeout=60)
    procs[1].communicate()
    assert procs[0].returncode == 2, err
    assert "rank 0 of 2: all-reduce failed" in err or "broadcast failed" in err, err


def test_ranks_that_differ_are_an_error_naming_what_differs(work):
    w, data, config, _ = work
    results = run_ranks(2, lambda r: train_args(config, data, w / "differ", "--seed", r), timeout=120)
    assert results[1][0] == 2 and "its run differs from rank 0's: --seed: 1 here, 0 on rank 0" in results[1][2]
    assert results[0][0] == 2 and "another rank's run differs" in results[0][2]
    assert not (w / "differ" / "checkpoint.pt").exists()
