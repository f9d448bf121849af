/* sum64: the checksum a checkpoint keeps for every tensor. It is a sum over elements, so ranks that
 * each hold a slice of a tensor (any slicing: rows, columns, pieces) compute partial sums and add
 * them up, and a reader with another layout can check what it reads the same way:
 *
 *   sum64 = sum over elements i of mix64(mix64(i + 0x9e3779b97f4a7c15) ^ bits_i)   (mod 2^64)
 *
 * i is the element's row-major index in the FULL tensor, bits_i its stored bytes read as a
 * little-endian unsigned integer (2 bytes for BF16/F16, 4 for F32), and mix64 the splitmix64
 * finalizer (kernels/rng.h rng_mix64). For a fixed i, bits -> term is a bijection, so a change of
 * any single element always changes the sum; several changes cancel with probability ~2^-64.
 * docs/CHECKPOINT_FORMAT.md gives the same definition in Python. */
#ifndef MEGATRON_CKPT_CHECKSUM_H
#define MEGATRON_CKPT_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* The sum64 terms of n elements of itemsize bytes (2, 4 or 8) at data, the first of which has
 * full-tensor index first_index. Runs on several threads for large n. */
uint64_t checksum_sum64(const void *data, size_t itemsize, int64_t first_index, int64_t n);

/* "sum64:" + 16 lowercase hex digits (out must hold 23 bytes); parse returns 0 or -1. */
void checksum_format(uint64_t sum, char out[23]);
int checksum_parse(const char *text, uint64_t *sum);

#endif
