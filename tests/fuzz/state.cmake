# tests/fuzz/state.cmake — the stored session value decoder (state/codec.c). The codec source
# is compiled into the harness (not linked from sr_state) so that libFuzzer's coverage
# instrumentation reaches it; it needs only sr_core.
sr_add_fuzz(session_value SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/session_value.c
            ${PROJECT_SOURCE_DIR}/state/codec.c LIBS sr_core)
target_include_directories(fuzz_session_value_replay PRIVATE ${PROJECT_SOURCE_DIR}/state
                           ${PROJECT_SOURCE_DIR}/state/include)
if(SR_FUZZ)
  target_include_directories(fuzz_session_value PRIVATE ${PROJECT_SOURCE_DIR}/state
                           ${PROJECT_SOURCE_DIR}/state/include)
endif()
