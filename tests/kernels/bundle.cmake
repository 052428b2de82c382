# tests/kernels/bundle.cmake — the model bundle loader (kernels/bundle.c, safetensors.c, vocab.c).
sr_add_test(test_bundle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_bundle.c
            LIBS sr_kernels PkgConfig::JANSSON)
