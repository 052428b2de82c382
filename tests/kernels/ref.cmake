# tests/kernels/ref.cmake — `streamrec score` against float64 references: the shared fixtures
# (tests/data/{gpt2-small,gru4rec-small}) and the generated cases under tests/data/ref (made by
# tests/gen/make_reference.py, a developer tool). The checker, tests/gen/compare_score.py, needs
# only python3's standard library.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(NOT Python3_Interpreter_FOUND)
  message(WARNING "python3 not found: score reference tests are not registered")
  return()
endif()
set(_sr_cmp ${CMAKE_CURRENT_LIST_DIR}/../gen/compare_score.py)
add_test(NAME score_ref_checker_selftest COMMAND ${Python3_EXECUTABLE} ${_sr_cmp} --self-test)
if(TARGET streamrec)
  file(GLOB _sr_ref_expected ${SR_TEST_DATA}/ref/*.expected.jsonl)
  set(_sr_ref_cases ${SR_TEST_DATA}/gpt2-small ${SR_TEST_DATA}/gru4rec-small)
  foreach(f ${_sr_ref_expected})
    string(REGEX REPLACE "\\.expected\\.jsonl$" "" _case ${f})
    list(APPEND _sr_ref_cases ${_case})
  endforeach()
  foreach(_case ${_sr_ref_cases})
    get_filename_component(_name ${_case} NAME)
    string(REPLACE "-" "_" _name ${_name})
    add_test(NAME score_ref_${_name}
             COMMAND ${Python3_EXECUTABLE} ${_sr_cmp} $<TARGET_FILE:streamrec> ${_case})
  endforeach()
  # micro-batch size must not change the top-k (issue 2): one session per batch
  add_test(NAME score_ref_gpt2_small_batch1
           COMMAND ${Python3_EXECUTABLE} ${_sr_cmp} --arg=--batch --arg=1 $<TARGET_FILE:streamrec>
                   ${SR_TEST_DATA}/gpt2-small)
endif()
