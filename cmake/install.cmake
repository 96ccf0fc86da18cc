# `cmake --install build --prefix P`: headers, libraries, the commands, a CMake package
# (find_package(lowbit CONFIG) -> lowbit::kernels, lowbit::engine, lowbit::torch) and a pkg-config
# file for the engine's C API. cpack -G DEB packages the same tree (cmake/package.cmake).
# Everything installed is relocatable: the CMake files and the .pc file find the prefix from their
# own place, executables find the libraries through $ORIGIN.
include(CMakePackageConfigHelpers)

set(LOWBIT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/lowbit)

# ---- lowbit::kernels: the torch-free quantizer kernels (static, position-independent) -----------
set_target_properties(lowbit_kernels PROPERTIES EXPORT_NAME kernels)
install(TARGETS lowbit_kernels EXPORT lowbitTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES include/lowbit/kernels.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lowbit)
install(FILES include/lowbit/detail/quant_math.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lowbit/detail)
install(FILES ${LOWBIT_GENERATED_INCLUDE}/lowbit/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lowbit)

# ---- lowbit::engine: the inference engine and its C API (shared, or static for embedding) -------
set(LOWBIT_PACKAGE_ENGINE OFF)
if(TARGET lowbit_engine)
  set(LOWBIT_PACKAGE_ENGINE ON)
  set_target_properties(lowbit_engine PROPERTIES EXPORT_NAME engine)
  set(engine_targets lowbit_engine)
  if(LOWBIT_ENGINE_STATIC)
    # A static engine's consumers link what it links: lowbit_io (installed beside it, internal)
    # and ONNX's protobuf classes (found again by the package's config).
    set_target_properties(lowbit_io PROPERTIES EXPORT_NAME internal_io)
    list(APPEND engine_targets lowbit_io)
  endif()
  install(TARGETS ${engine_targets} EXPORT lowbitTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES include/lowbit/engine.h include/lowbit/engine_c.h
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lowbit)
  install(TARGETS lowbit-run RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

  # pkg-config for the C API: the prefix is found from the .pc file's own directory.
  set(pc_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  file(RELATIVE_PATH LOWBIT_PC_TO_PREFIX /prefix/${pc_dir} /prefix)
  if(LOWBIT_ENGINE_STATIC)
    set(LOWBIT_PC_LIBS_PRIVATE "-llowbit_io -lonnx_proto -lprotobuf -lz -lstdc++ -lm -lpthread")
  else()
    set(LOWBIT_PC_LIBS_PRIVATE "")
  endif()
  configure_file(cmake/lowbit-engine.pc.in ${CMAKE_BINARY_DIR}/generated/lowbit-engine.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/generated/lowbit-engine.pc DESTINATION ${pc_dir})
endif()

install(EXPORT lowbitTargets NAMESPACE lowbit:: DESTINATION ${LOWBIT_CMAKE_DIR})

# ---- lowbit::torch: the operators, layers and QAT (shared; needs Torch) -------------------------
# Its own export file, read by the config only where Torch is found, so that engine-only
# consumers need no LibTorch. The `lowbit` command and the exporter it links come with it.
set(LOWBIT_PACKAGE_TORCH OFF)
set(LOWBIT_TORCH_MAJOR_MINOR "")
if(TARGET lowbit_torch)
  set(LOWBIT_PACKAGE_TORCH ON)
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" LOWBIT_TORCH_MAJOR_MINOR "${Torch_VERSION}")
  set_target_properties(lowbit_torch PROPERTIES EXPORT_NAME torch)
  install(TARGETS lowbit_torch EXPORT lowbitTorchTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES include/lowbit/ops.h include/lowbit/nn.h include/lowbit/qat.h
                include/lowbit/optim.h include/lowbit/catalogue.h
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lowbit)
  install(EXPORT lowbitTorchTargets NAMESPACE lowbit:: DESTINATION ${LOWBIT_CMAKE_DIR})
  install(TARGETS lowbit_export LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(TARGETS lowbit RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

configure_package_config_file(cmake/lowbitConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/generated/lowbitConfig.cmake
                              INSTALL_DESTINATION ${LOWBIT_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/generated/lowbitConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/generated/lowbitConfig.cmake
              ${CMAKE_BINARY_DIR}/generated/lowbitConfigVersion.cmake
        DESTINATION ${LOWBIT_CMAKE_DIR})
install(FILES README.md CHANGELOG.md DESTINATION ${CMAKE_INSTALL_DOCDIR})


# The Python package's compiled libraries (setup.py installs this component into the package
# directory; not part of a full install): the operator library and the exporter, which finds the
# first beside it.
if(TARGET lowbit_torch)
  install(TARGETS lowbit_torch lowbit_export LIBRARY DESTINATION lowbit COMPONENT python
          EXCLUDE_FROM_ALL)
  # The exporter finds the operator library beside it, installed or in the Python package.
  set_target_properties(lowbit_torch lowbit_export PROPERTIES
                        INSTALL_RPATH "$ORIGIN;$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
endif()

include(cmake/package.cmake)
