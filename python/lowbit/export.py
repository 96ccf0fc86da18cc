"""Export of trained checkpoints to ONNX (docs/export.md), through the C++ exporter.

The exporter lives in liblowbit_export.so, looked for next to the loaded operator library (so that
both come from the same build), or at ``$LOWBIT_EXPORT_LIBRARY``.
"""
import ctypes
import os
from pathlib import Path

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
    lib.lowbit_export_onnx.argtypes = [ctypes.c_char_p] * 4 + [ctypes.c_char_p, ctypes.c_size_t]
    lib.lowbit_export_onnx.restype = ctypes.c_int
    _lib = lib
    return lib


def export_onnx(checkpoint, out, format="qonnx", data=None):
    """Exports the model of ``checkpoint`` (a training output directory or a checkpoint file) to
    the ONNX file ``out``, written atomically, and returns ``out``.

    ``format``: ``"qonnx"`` (QONNX Quant/BipolarQuant nodes, for low-bit toolchains) or
    ``"standard"`` (standard ONNX operators only, for onnxruntime). ``data``: the training data
    set (IDX directory), only for checkpoints that do not store their input standardisation.
    Raises ValueError for bad arguments, a missing or corrupt checkpoint, or a model the format
    cannot express (the message names the module), OSError when ``out`` cannot be written (a full
    disk: "OUT: no space left on device"; nothing is left behind), RuntimeError for other failures.
    """
    if format not in FORMATS:
        raise ValueError(f"format: unknown format {format!r} (known: {', '.join(FORMATS)})")
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
    if code == 1:
        raise ValueError(error.value.decode(errors="replace"))
    if code == 3:
        raise OSError(error.value.decode(errors="replace"))
    if code != 0:
        raise RuntimeError(error.value.decode(errors="replace"))
    return out
