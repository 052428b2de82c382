# tests/kernels/synth.cmake — sr_bundle_synthetic: shapes, vocabulary, determinism, refusals.
sr_add_test(test_synth SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_synth.c LIBS sr_kernels)
