/* Constant and dynamic loss scaling; see scaler.h. */
#include "optim/scaler.h"

#include <string.h>

void scaler_init_constant(struct loss_scaler *s, double scale)
{
    memset(s, 0, sizeof *s);
    s->scale = scale;
}

void scaler_init_dynamic(struct loss_scaler *s, double initial_scale, double min_scale,
                         int64_t window, int64_t hysteresis)
{
    memset(s, 0, sizeof *s);
    s->dynamic = true;
    s->scale = initial_scale;
    s->min_scale = min_scale;
    s->growth_factor = 2.0;
    s->backoff_factor = 0.5;
    s->growth_interval = window;
    s->hysteresis = hysteresis;
    s->hysteresis_tracker = hysteresis;
}

void scaler_update(struct loss_scaler *s, bool found_inf)
{
    if (!s->dynamic) return;
    if (found_inf) {
        s->growth_tracker = 0;
        s->hysteresis_tracker--;
        if (s->hysteresis_tracker <= 0) {
            double next = s->scale * s->backoff_factor;
            s->scale = next > s->min_scale ? next : s->min_scale;
        }
        return;
    }
    s->growth_tracker++;
    if (s->growth_tracker == s->growth_interval) {
        s->growth_tracker = 0;
        s->hysteresis_tracker = s->hysteresis;
        s->scale *= s->growth_factor;
    }
}
