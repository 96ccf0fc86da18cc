"""Export to ONNX (docs/export.md), through the C++ exporter: of trained checkpoints, and of
PyTorch models (a float model, or what lowbit.quantize made of one), whose traced graph is
described here node by node (_graph.py) and translated by the same C++ code.

The exporter lives in liblowbit_export.so, looked for next to the loaded operator library (so that
both come from the same build), or at ``$LOWBIT_EXPORT_LIBRARY``.
"""
import ctypes
import os
from pathlib import Path

import torch

from ._library import library_path

__all__ = ["export_onnx", "FORMATS"]

FORMATS = ("qonnx", "standard")
_NAME = "liblowbit_export.so"
_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    path = Path(os.environ.get("LOWBIT_EXPORT_LIBRARY") or Path(library_path).parent / _NAME)
    if not path.is_file():
        raise ImportError(
            f"lowbit.export: cannot find {_NAME} at {path}; build it with ./scripts/build, "
            "or set LOWBIT_EXPORT_LIBRARY to its path."
        )
    lib = ctypes.CDLL(str(path))
    torch.ops.load_library(str(path))  # lowbit::_export_graph
    lib.lowbit_export_onnx.argtypes = [ctypes.c_char_p] * 4 + [ctypes.c_char_p, ctypes.c_size_t]
    lib.lowbit_export_onnx.restype = ctypes.c_int
    _lib = lib
    return lib


def export_onnx(source, *args, **kwargs):
    """Exports a model to ONNX, written atomically; returns the path.

    ``export_onnx(model, example_input, path, format="qonnx")``: a PyTorch model (torch.nn.Module:
    a float model, or lowbit.quantize's result; traced with torch.fx), run once in eval mode on
    ``example_input`` (a tensor, or a tuple of them) for its shapes. The ONNX graph's inputs are
    the model's (batch size free), its outputs ``output`` (``output0``, ... for several).
    ``export_onnx(checkpoint, out, format="qonnx", data=None)``: the model of a `lowbit train`
    output directory or checkpoint file (the graph takes raw pixel values 0..255).
    """
    if isinstance(source, torch.nn.Module):
        return _export_model(source, *args, **kwargs)
    return _export_checkpoint(source, *args, **kwargs)


def _raise(code, message):
    if code == 1:
        raise ValueError(message)
    if code == 3:
        raise OSError(message)
    if code != 0:
        raise RuntimeError(message)


def _check_format(format):
    if format not in FORMATS:
        raise ValueError(f"format: unknown format {format!r} (known: {', '.join(FORMATS)})")


def _export_model(model, example_input, path, format="qonnx", name=None):
    from . import _graph

    _check_format(format)
    if b"\0" in os.fsencode(path):
        raise ValueError(f"path: a path with a NUL character: {path!r}")
    description, tensors = _graph.describe(model, example_input)
    _load()
    code, message = torch.ops.lowbit._export_graph(description, tensors, os.fspath(path), format,
                                                   name or type(model).__name__)
    _raise(code, message)
    return path


def _export_checkpoint(checkpoint, out, format="qonnx", data=None):
    """Exports the model of ``checkpoint`` (a training output directory or a checkpoint file) to
    the ONNX file ``out``, written atomically, and returns ``out``.

    ``format``: ``"qonnx"`` (QONNX Quant/BipolarQuant nodes, for low-bit toolchains) or
    ``"standard"`` (standard ONNX operators only, for onnxruntime). ``data``: the training data
    set (IDX directory), only for checkpoints that do not store their input standardisation.
    Raises ValueError for bad arguments, a missing or corrupt checkpoint, or a model the format
    cannot express (the message names the module), OSError when ``out`` cannot be written (a full
    disk: "OUT: no space left on device"; nothing is left behind), RuntimeError for other failures.
    """
    _check_format(format)
    for name, path in (("checkpoint", checkpoint), ("out", out), ("data", data)):
        if path is not None and b"\0" in os.fsencode(path):
            raise ValueError(f"{name}: a path with a NUL character: {path!r}")
    lib = _load()
    error = ctypes.create_string_buffer(4096)
    code = lib.lowbit_export_onnx(
        os.fsencode(checkpoint),
        os.fsencode(out),
        format.encode(),
        os.fsencode(data) if data is not None else None,
        error,
        len(error),
    )
    _raise(code, error.value.decode(errors="replace"))
    return out
