# tests/stream/demo.cmake — `streamrec demo` end to end (embedded broker, generator, runtime,
# hit rate vs the most-popular baseline), including an installed copy.
add_test(NAME test_demo
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_demo.sh $<TARGET_FILE:streamrec>
                 ${CMAKE_COMMAND} ${CMAKE_BINARY_DIR})
set_tests_properties(test_demo PROPERTIES TIMEOUT 120)
