/* Loss scaling for --fp16 (megatron/core/optimizer/grad_scaler.py): a constant scale with
 * --loss-scale, otherwise Megatron's DynamicGradScaler (start at --initial-loss-scale, halve after
 * --hysteresis overflowing steps, double after --loss-scale-window clean ones, never below
 * --min-loss-scale). bf16 and fp32 runs use a constant scale of 1. */
#ifndef MEGATRON_OPTIM_SCALER_H
#define MEGATRON_OPTIM_SCALER_H

#include <stdbool.h>
#include <stdint.h>

struct loss_scaler {
    bool dynamic;
    double scale;
    double min_scale;
    double growth_factor, backoff_factor;
    int64_t growth_interval;   /* --loss-scale-window */
    int64_t hysteresis;
    int64_t growth_tracker;
    int64_t hysteresis_tracker;
};

void scaler_init_constant(struct loss_scaler *s, double scale);
void scaler_init_dynamic(struct loss_scaler *s, double initial_scale, double min_scale,
                         int64_t window, int64_t hysteresis);
/* After each step: found_inf says whether the unscaled gradients held a NaN or Inf. */
void scaler_update(struct loss_scaler *s, bool found_inf);

#endif
