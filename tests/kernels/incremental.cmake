# tests/kernels/incremental.cmake — incremental encoding: resumed == full, byte for byte.
sr_add_test(test_incremental SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_incremental.c LIBS sr_kernels)
