# tests/kernels/bundle.cmake — the model bundle loader (kernels/bundle.c, safetensors.c, vocab.c).
sr_add_test(test_bundle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_bundle.c
            LIBS sr_kernels PkgConfig::JANSSON)
# Catalogue updates (kernels/bundle_edit.c): add-items output, index rebuild, refusals.
sr_add_test(test_bundle_edit SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_bundle_edit.c
            LIBS sr_kernels PkgConfig::JANSSON)
