# `cpack -G DEB` (scripts/package): lowbit_VERSION_ARCH.deb of the installed tree, under /usr.
# Its dependencies come from dpkg-shlibdeps (the libraries the installed binaries link: LibTorch's,
# protobuf, ONNX, yaml-cpp, ...); the -dev packages the CMake package's lowbit::torch and a
# static engine need are recommended, not required (the engine needs none of them).
set(CPACK_PACKAGE_NAME lowbit)
set(CPACK_PACKAGE_VENDOR "lowbit")
set(CPACK_PACKAGE_CONTACT "lowbit developers <lowbit@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "low-bit (binary, ternary, n-bit, power-of-2) neural networks: training and inference")
set(CPACK_PACKAGE_DESCRIPTION
    "lowbit trains neural networks with 1-, 2-, 4- and 8-bit weights and activations on LibTorch \
(quantizer operators, quantized layers, quantization-aware training, the lowbit command) and runs \
them on a standalone integer and bitwise inference engine (C and C++ APIs, lowbit-run).")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # lowbit_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libtorch-dev, libopenblas0-openmp, cmake, pkgconf")
set(CPACK_STRIP_FILES ON)
set(CPACK_SOURCE_GENERATOR "")
set(CPACK_GENERATOR DEB)
include(CPack)
