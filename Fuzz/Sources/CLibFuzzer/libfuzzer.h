// libFuzzer's driver, for the fuzz targets' entry points (see Package.swift):
// -sanitize=fuzzer links libclang_rt.fuzzer, which defines these.
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
/// Defined by each fuzz target (@_cdecl("LLVMFuzzerTestOneInput")).
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/// What libFuzzer's own main() does (FuzzerMain.cpp).
static inline int jobfetch_fuzzer_main(int argc, char **argv) {
    return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}
