# tests/fuzz/schemas.cmake — libFuzzer harnesses of the schemas/ decoders (included by
# tests/fuzz/CMakeLists.txt). Corpora in corpus/<name>/ replay under CTest. The libFuzzer
# binaries link sr_schemas_fuzz, the coverage-instrumented copy of the library.
if(TARGET sr_schemas)
  foreach(_h event_json event_avro event_confluent avro_container)
    sr_add_fuzz(${_h} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/${_h}.c LIBS sr_schemas)
    if(TARGET fuzz_${_h} AND TARGET sr_schemas_fuzz)
      set_property(TARGET fuzz_${_h} PROPERTY LINK_LIBRARIES sr_schemas_fuzz)
    endif()
  endforeach()
endif()
