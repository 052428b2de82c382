# tests/kernels/cuda.cmake — CUDA-vs-CPU parity of every backend op (only in CUDA builds; the
# executable itself skips with a message when the machine has no CUDA device).
if(SR_HAVE_CUDA)
  sr_add_test(test_cuda_parity SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cuda_parity.c
              LIBS sr_kernels)
  target_include_directories(test_cuda_parity PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
endif()
