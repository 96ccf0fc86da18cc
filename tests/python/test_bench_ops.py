"""bench/ops.py compares like with like: for every operator, the torch counterpart it times computes
the same forward and the same gradients (up to rounding), and the benchmark runs end to end."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import ops_cases  # noqa: E402

TENSORS = ops_cases.Tensors(1 << 12)


def _flat(outs):
    return list(outs) if isinstance(outs, (tuple, list)) else [outs]


@pytest.mark.parametrize("case", ops_cases.CASES, ids=lambda c: c.name)
def test_torch_counterpart_computes_the_same(case):
    for pass_ in case.passes:
        ours, theirs = case.make(pass_, TENSORS)
        a, b = _flat(ours()), _flat(theirs())
        assert len(a) == len(b)
        if not case.same_params:
            a, b = a[:1], b[:1]  # the gradient of x only
        for i, (u, v) in enumerate(zip(a, b)):
            u, v = u.reshape(-1).double(), v.reshape(-1).double()
            assert u.shape == v.shape, (pass_, i)
            agree = torch.isclose(u, v, rtol=1e-3, atol=1e-5).double().mean().item()
            # swish_sign's gradient: its polynomial of the sigmoid rounds otherwise in a few places.
            assert agree >= 0.99, f"{case.name} {pass_} output {i}: {agree:.4f} of the elements agree"


def test_benchmark_runs_and_tabulates(tmp_path):
    out = tmp_path / "ops.jsonl"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    cmd = [sys.executable, os.path.join(ROOT, "bench", "ops.py"), "--memory", "fresh", "--sizes",
           "12", "--threads", "1", "--repeat", "1", "--runs", "2", "--only", "ste_sign,ttq", "--out", str(out)]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["case"], r["pass"]) for r in rows] == [
        ("ste_sign", "fwd"), ("ste_sign", "fwd_bwd"), ("ttq_weight", "fwd"), ("ttq_weight", "fwd_bwd")]
    for r in rows:
        assert r["n"] == 4096 and r["threads"] == 1 and r["samples"] == 2
        assert r["ours_best_ms"] <= r["ours_median_ms"] and r["theirs_best_ms"] <= r["theirs_median_ms"]
        assert r["copy_fraction_best"] == pytest.approx(r["gbps_best"] / r["copy_gbps_best"],
                                                        rel=0.05, abs=0.02)
        # The copies beside one case are some of all the copies: never faster than the best.
        assert r["copy_beside_best_ms"] >= r["copy_best_ms"]
        assert r["copy_fraction_beside"] >= r["copy_fraction_best"]
    table = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "ops.py"), "--table", str(out)],
                           check=True, env=env, capture_output=True, text=True).stdout
    assert "| `ttq_weight` | fwd+bwd | 24 |" in table
    wide = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "ops.py"), "--roofline", str(out)],
                          check=True, env=env, capture_output=True, text=True).stdout
    assert wide.count("| `ste_sign` |") == 2 and "2^12, 1t: of copy, x torch" in wide
    beside = {(r["case"], r["pass"]): r["copy_fraction_beside"] for r in rows}
    assert f"[{beside[('ste_sign', 'fwd')]}]" in wide
