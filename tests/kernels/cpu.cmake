# cpu backend: each op vs a naive double reference; models vs a per-session reference forward;
# `streamrec score` on the fixtures vs *.expected.jsonl.
sr_add_test(test_cpu_ops SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cpu_ops.c LIBS sr_kernels)
sr_add_test(test_cpu_topk SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cpu_topk.c LIBS sr_kernels m)
sr_add_test(test_score_fixtures SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_score_fixtures.c
            LIBS PkgConfig::JANSSON m)
add_dependencies(test_score_fixtures streamrec)
sr_add_test(test_models SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_models.c LIBS sr_kernels m)
# White-box tests of the backend table (kernels_int.h, private to sr_kernels).
target_include_directories(test_cpu_ops PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
target_include_directories(test_cpu_topk PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
target_include_directories(test_models PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
