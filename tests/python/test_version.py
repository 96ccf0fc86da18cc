"""lowbit.__version__ is the compiled library's, which CMake takes from CMakeLists.txt's project()."""
import re
from pathlib import Path

import lowbit
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_projects():
    text = (ROOT / "CMakeLists.txt").read_text()
    version = re.search(r"project\(lowbit VERSION ([0-9]+\.[0-9]+\.[0-9]+)", text).group(1)
    assert lowbit.__version__ == version
    assert torch.ops.lowbit._version() == version


def test_changelog_names_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{lowbit.__version__}]" in changelog
