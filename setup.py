"""Builds the Python package: python/lowbit and the compiled libraries it loads.

The C++ libraries (liblowbit_torch.so: the operators; liblowbit_export.so: the ONNX exporter) are
built by CMake, in $LOWBIT_BUILD_DIR (default: build/, the tree ./scripts/build makes, configured
here if it is not), and installed into the package directory by CMake's `python` install
component (so their run path is the installed one). The version is CMakeLists.txt's project().

    python3 -m pip install --no-build-isolation .   # offline, with Debian's pip and setuptools
    python3 -m pip wheel --no-build-isolation --no-deps -w dist .
"""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _version():
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(r"project\(lowbit VERSION ([0-9.]+)", text)
    if not match:
        raise RuntimeError("setup.py: no 'project(lowbit VERSION x.y.z' in CMakeLists.txt")
    return match.group(1)


def _run(command):
    print("lowbit setup.py:", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True)


class BuildWithLibraries(build_py):
    """build_py, then the CMake libraries copied next to the Python files."""

    def run(self):
        super().run()
        build_dir = Path(os.environ.get("LOWBIT_BUILD_DIR") or ROOT / "build")
        if not build_dir.is_absolute():
            build_dir = ROOT / build_dir
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("setup.py: cmake not found (./scripts/setup installs it)")
        cache = build_dir / "CMakeCache.txt"
        if cache.is_file() and re.search(r"^LOWBIT_WITH_TORCH:BOOL=(OFF|0|FALSE|NO)$",
                                         cache.read_text(), re.M | re.I):
            raise RuntimeError(
                f"setup.py: {build_dir} is configured with LOWBIT_WITH_TORCH=OFF (no operator "
                "library); set LOWBIT_BUILD_DIR to another build directory")
        if not cache.is_file():
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            _run([cmake, "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                  "-DLOWBIT_BUILD_TESTS=OFF", *generator])
        jobs = str(os.cpu_count() or 1)
        _run([cmake, "--build", build_dir, "--target", "lowbit_torch", "lowbit_export",
              "--parallel", jobs])
        package = Path(self.build_lib) / "lowbit"
        with tempfile.TemporaryDirectory() as staging:
            _run([cmake, "--install", build_dir, "--component", "python", "--prefix", staging])
            libraries = sorted((Path(staging) / "lowbit").glob("*.so"))
            if not libraries:
                raise RuntimeError(f"setup.py: CMake installed no library from {build_dir}")
            for library in libraries:
                shutil.copy2(library, package / library.name)


class BinaryDistribution(Distribution):
    """The package holds compiled libraries: a platform wheel, installed into platlib."""

    def has_ext_modules(self):
        return True


setup(
    version=_version(),
    package_dir={"": "python"},
    packages=["lowbit"],
    cmdclass={"build_py": BuildWithLibraries},
    distclass=BinaryDistribution,
)
