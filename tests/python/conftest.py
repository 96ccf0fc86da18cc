"""pytest setup: makes `import lowbit` (python/ next to tests/) and `import reference` work."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_PYTHON = os.path.normpath(os.path.join(_HERE, "..", "..", "python"))
for _p in (_PYTHON, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)
