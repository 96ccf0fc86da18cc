"""Finds and loads the compiled operator library (liblowbit_torch.so)."""
import os
from pathlib import Path

import torch

_NAME = "liblowbit_torch.so"


def _candidates():
    env = os.environ.get("LOWBIT_LIBRARY")
    if env:
        yield Path(env)
        return
    here = Path(__file__).resolve().parent
    yield here / _NAME
    yield here.parent.parent / "build" / _NAME


def _load():
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if path.is_file():
            torch.ops.load_library(str(path))
            return str(path)
    raise ImportError(
        "lowbit: cannot find the compiled operator library; looked at "
        + ", ".join(tried)
        + ". Build it with ./scripts/build, or set LOWBIT_LIBRARY to its path."
    )


library_path = _load()
