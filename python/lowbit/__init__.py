"""lowbit: low-bit quantizers (binary, ternary, n-bit, power-of-2) as native PyTorch operators.

The operators are C++ (registered as ``torch.ops.lowbit.*``); this package loads the compiled
library and gives each operator a documented Python function. Numerics: docs/quantizers.md.
"""
import os as _os

import torch as _torch

from ._library import library_path
from ._ops import *  # noqa: F401,F403
from ._ops import __all__ as _ops_all
from . import nn  # noqa: F401  (the layers; lowbit.nn imports only ._ops)
from . import qat  # noqa: F401  (quantization-aware training, over ._ops and .nn)
from .export import export_onnx  # noqa: F401  (ONNX export of trained checkpoints)
from .convert import quantize, recipes  # noqa: F401  (float model -> quantized model)
from .summary import summary  # noqa: F401

__all__ = ["library_path", "export_onnx", "quantize", "recipes", "summary"] + list(_ops_all)
__version__ = _torch.ops.lowbit._version()  # the compiled library's (CMakeLists.txt's project())
