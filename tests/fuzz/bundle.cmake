# tests/fuzz/bundle.cmake — the model bundle readers: safetensors, bundle.json, items.tsv.
# The loader's sources are compiled into each harness (not linked from sr_kernels) so that
# libFuzzer's coverage instrumentation reaches them.
set(_sr_bundle_src ${PROJECT_SOURCE_DIR}/kernels/bundle.c ${PROJECT_SOURCE_DIR}/kernels/safetensors.c
    ${PROJECT_SOURCE_DIR}/kernels/vocab.c ${PROJECT_SOURCE_DIR}/kernels/bundle_index.c)
foreach(_h safetensors bundle_json vocab)
  sr_add_fuzz(${_h} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/${_h}.c ${_sr_bundle_src}
              LIBS sr_core PkgConfig::JANSSON)
  target_include_directories(fuzz_${_h}_replay PRIVATE ${PROJECT_SOURCE_DIR}/kernels
                             ${PROJECT_SOURCE_DIR}/kernels/include)
  if(SR_FUZZ)
    target_include_directories(fuzz_${_h} PRIVATE ${PROJECT_SOURCE_DIR}/kernels
                             ${PROJECT_SOURCE_DIR}/kernels/include)
  endif()
endforeach()
