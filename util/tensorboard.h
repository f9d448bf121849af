/* TensorBoard event files, written the way PyTorch's SummaryWriter writes them for Megatron's
 * --tensorboard-dir: events.out.tfevents.<time>.<host>.<pid>.0 in the directory, a TFRecord stream
 * (each record: its length as 8 little-endian bytes, the length's masked CRC-32C, the bytes, their
 * masked CRC-32C) of Event protocol buffers: first one naming the file version "brain.Event:2",
 * then one per scalar (wall time, step, a Summary holding one Value with the tag and a 32-bit
 * simple_value). */
#ifndef MEGATRON_UTIL_TENSORBOARD_H
#define MEGATRON_UTIL_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

struct tb_writer;

/* Creates dir (mkdir -p) and a new event file in it with its file-version event. NULL with a
 * one-line reason in err when either cannot be made. Events go to the file system in groups, as
 * SummaryWriter's queue sends them: when queue_size are pending, or 120 s after the last time. */
struct tb_writer *tb_open(const char *dir, int64_t queue_size, char *err, size_t errlen);

/* One scalar at a step (written as a 32-bit float, as add_scalar does). A write that fails is
 * reported once on stderr; the writer then drops what follows. */
void tb_scalar(struct tb_writer *w, const char *tag, double value, int64_t step);

/* Hands every pending event to the file system. */
void tb_flush(struct tb_writer *w);

/* Flushes and closes; NULL is allowed. */
void tb_close(struct tb_writer *w);

/* For tests. CRC-32C (Castagnoli) of data, and TFRecord's masked form of it. */
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc32c(const void *data, size_t n);

/* The Event of one scalar into out[cap]: its length (0 when cap is too small or the tag longer
 * than 1000 bytes). */
size_t tb_scalar_event(uint8_t *out, size_t cap, double wall_time, int64_t step, const char *tag, float value);

#endif
