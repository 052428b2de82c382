# tests/kernels/faiss.cmake — FAISS retrieval (issue 6): the sr_faiss wrapper, recall on a
# clustered catalogue, bundle index checks, score/replay agreement, a python3-faiss index.
# Only with FAISS in the build (SR_HAVE_FAISS, kernels/CMakeLists.txt).
if(TARGET sr_faiss)
  sr_add_test(test_faiss SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_faiss.c
              LIBS sr_kernels PkgConfig::JANSSON)
  target_include_directories(test_faiss PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
  add_dependencies(test_faiss streamrec)
  # FAISS 1.7.3 leaks a half-read index when read_index throws on corrupt bytes (inside
  # libfaiss.a): suppressed by that one frame, other leaks still fail the test.
  set_tests_properties(test_faiss PROPERTIES TIMEOUT 600 ENVIRONMENT
    "CMOCKA_MESSAGE_OUTPUT=stdout;LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/faiss.lsan.supp")
endif()
