/* What the libFuzzer targets here share: the entry point's prototype, and REQUIRE, which stops
 * the fuzzer (and keeps the input) where an accepted input breaks what the code promises. */
#ifndef MEGATRON_FUZZ_FUZZ_H
#define MEGATRON_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
