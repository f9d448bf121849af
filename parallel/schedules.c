/* Running a pipeline schedule on a model: see schedules.h. */
#include "parallel/schedules.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/ops.h"
#include "parallel/comm.h"
#include "util/error.h"

enum { TAG_FORWARD = 0, TAG_BACKWARD = 1 };

/* Buffers (or activation slots) of one kind for one chunk, and which are taken. */
struct pool {
    const char *what;
    int count;
    struct tensor *bufs; /* NULL for the model's activation slots */
    bool *used;
};

struct schedule {
    struct gpt_model *model;
    const struct pipeline_table *table;
    int pp, vp, pp_rank, num_micro_batches;
    struct comm_group *pp_group;
    struct pool *acts, *inputs, *grads; /* [vp] */
    /* per (micro batch, chunk): the slot or buffer it holds of each pool, -1 when none */
    int *act_of, *input_of, *grad_of;
    bool *sending;      /* its input gradient is in the batch being gathered */
    double *tokens;     /* [M]: tokens of each micro batch's loss */
    struct comm_p2p *ops;
    int num_ops;
    struct schedule_step *step;
    bool sync_started;
};

static int cell(const struct schedule *s, int mb, int chunk) { return mb * s->vp + chunk; }

static int take(struct pool *p, int *held, int mb, int chunk)
{
    if (*held >= 0) BUG("pipeline: micro batch %d already holds %s on chunk %d", mb, p->what, chunk);
    for (int k = 0; k < p->count; k++)
        if (!p->used[k]) {
            p->used[k] = true;
            return *held = k;
        }
    BUG("pipeline: chunk %d has no free %s (of %d) for micro batch %d", chunk, p->what, p->count, mb);
}

static int holding(const struct pool *p, int held, int mb, int chunk)
{
    if (held < 0) BUG("pipeline: micro batch %d holds no %s on chunk %d", mb, p->what, chunk);
    return held;
}

static void release(struct pool *p, int *held, int mb, int chunk)
{
    p->used[holding(p, *held, mb, chunk)] = false;
    *held = -1;
}

static void pool_init(struct pool *p, const char *what, int count, const struct tensor *like, enum device dev)
{
    p->what = what;
    p->count = count;
    p->used = xcalloc((size_t)(count > 0 ? count : 1), sizeof *p->used);
    if (!like) return;
    p->bufs = xcalloc((size_t)(count > 0 ? count : 1), sizeof *p->bufs);
    for (int k = 0; k < count; k++) {
        void *data = device_alloc(dev, (size_t)tensor_numel(*like) * dtype_size(like->dtype));
        p->bufs[k] = tensor_make(data, like->dtype, dev, like->ndim, like->shape);
    }
}

static void pool_free(struct pool *p, enum device dev)
{
    for (int k = 0; p->bufs && k < p->count; k++) device_free(dev, p->bufs[k].data);
    free(p->bufs);
    free(p->used);
}

struct schedule *schedule_create(struct gpt_model *m, const struct pipeline_schedule *sched, int pp_rank,
                                 struct comm_group *pp_group)
{
    struct schedule *s = xcalloc(1, sizeof *s);
    int vp = sched->vp, cells = sched->num_micro_batches * vp;
    if (m->num_chunks != vp) BUG("schedule_create: model of %d chunks, schedule of %d", m->num_chunks, vp);
    s->model = m;
    s->table = &sched->tables[pp_rank];
    s->pp = sched->pp;
    s->vp = vp;
    s->pp_rank = pp_rank;
    s->num_micro_batches = sched->num_micro_batches;
    s->pp_group = pp_group;
    struct pipeline_memory *mem = xcalloc((size_t)vp, sizeof *mem);
    pipeline_table_memory(s->table, vp, sched->num_micro_batches, mem);
    s->acts = xcalloc((size_t)vp, sizeof *s->acts);
    s->inputs = xcalloc((size_t)vp, sizeof *s->inputs);
    s->grads = xcalloc((size_t)vp, sizeof *s->grads);
    for (int v = 0; v < vp; v++) {
        struct tensor like = gpt_chunk_input(m, v, 0);
        if (m->chunks[v].spec.num_slots < mem[v].activations)
            BUG("schedule_create: chunk %d has %d activation slots, the schedule needs %d", v,
                m->chunks[v].spec.num_slots, mem[v].activations);
        pool_init(&s->acts[v], "activation slot", m->chunks[v].spec.num_slots, NULL, m->device);
        pool_init(&s->inputs[v], "received input buffer", mem[v].inputs, &like, m->device);
        pool_init(&s->grads[v], "input gradient buffer", mem[v].grads, &like, m->device);
    }
    free(mem);
    s->act_of = xmalloc((size_t)cells * sizeof *s->act_of);
    s->input_of = xmalloc((size_t)cells * sizeof *s->input_of);
    s->grad_of = xmalloc((size_t)cells * sizeof *s->grad_of);
    for (int c = 0; c < cells; c++) s->act_of[c] = s->input_of[c] = s->grad_of[c] = -1;
    s->sending = xcalloc((size_t)cells, sizeof *s->sending);
    s->tokens = xcalloc((size_t)sched->num_micro_batches, sizeof *s->tokens);
    s->ops = xmalloc((size_t)(2 * cells + 2) * sizeof *s->ops);
    return s;
}

void schedule_free(struct schedule *s)
{
    if (!s) return;
    for (int v = 0; v < s->vp; v++) {
        pool_free(&s->acts[v], s->model->device);
        pool_free(&s->inputs[v], s->model->device);
        pool_free(&s->grads[v], s->model->device);
    }
    free(s->acts);
    free(s->inputs);
    free(s->grads);
    free(s->act_of);
    free(s->input_of);
    free(s->grad_of);
    free(s->sending);
    free(s->tokens);
    free(s->ops);
    free(s);
}

static void add_op(struct schedule *s, bool send, struct tensor t, int peer, int tag)
{
    s->ops[s->num_ops++] = (struct comm_p2p){send, t.data, (size_t)tensor_numel(t), peer, tag};
}

/* Posts the gathered batch and waits for it; then the input gradients that went out are free. */
static void flush(struct schedule *s)
{
    struct gpt_model *m = s->model;
    enum comm_dtype dt = m->activation_dtype == DT_F32 ? COMM_F32 : COMM_U16;
    if (s->num_ops > 0) {
        if (m->device == DEV_CUDA)
            comm_device_p2p_batch(s->pp_group, s->ops, s->num_ops, dt);
        else
            comm_p2p_batch(s->pp_group, s->ops, s->num_ops, dt);
    }
    s->num_ops = 0;
    for (int c = 0; c < s->num_micro_batches * s->vp; c++)
        if (s->sending[c]) {
            s->sending[c] = false;
            release(&s->grads[c % s->vp], &s->grad_of[c], c / s->vp, c % s->vp);
        }
}

/* The forward of (mb, chunk) into activation slot `slot`, its input already in place. */
static void forward_into(struct schedule *s, int mb, int chunk, int slot)
{
    struct schedule_step *st = s->step;
    double tokens = gpt_forward_chunk(s->model, chunk, slot, &st->batches[mb]);
    if (!s->model->chunks[chunk].spec.post_process) return;
    st->num_tokens += tokens;
    s->tokens[mb] = tokens;
}

static void forward(struct schedule *s, int mb, int chunk)
{
    int c = cell(s, mb, chunk), slot = take(&s->acts[chunk], &s->act_of[c], mb, chunk);
    if (!s->model->chunks[chunk].spec.pre_process) { /* the input received earlier */
        struct pool *in = &s->inputs[chunk];
        op_copy(gpt_chunk_input(s->model, chunk, slot), in->bufs[holding(in, s->input_of[c], mb, chunk)]);
        release(in, &s->input_of[c], mb, chunk);
    }
    forward_into(s, mb, chunk, slot);
}

static void backward(struct schedule *s, int mb, int chunk)
{
    struct schedule_step *st = s->step;
    const struct gpt_chunk_spec *spec = &s->model->chunks[chunk].spec;
    int c = cell(s, mb, chunk), slot = holding(&s->acts[chunk], s->act_of[c], mb, chunk);
    struct gpt_batch g = st->batches[mb];
    if (mb == s->num_micro_batches - 1 && st->ddp) { /* the chunk's last backward: its grads become final */
        if (!s->sync_started) ddp_start_grad_sync(st->ddp);
        s->sync_started = true;
        if (st->overlap_grad_reduce) {
            g.on_grads_ready = ddp_grads_ready;
            g.hook_ctx = st->ddp;
        }
    }
    double tokens = s->tokens[mb] > 0 ? s->tokens[mb] : 1.0;
    float scale = spec->post_process ? (float)(st->loss_scale / (tokens * st->loss_divisor)) : 0.0f;
    gpt_backward_chunk(s->model, chunk, slot, &g, scale);
    if (!spec->pre_process) { /* the input's gradient waits for its send in a buffer of its own */
        int k = take(&s->grads[chunk], &s->grad_of[c], mb, chunk);
        op_copy(s->grads[chunk].bufs[k], gpt_chunk_grad(s->model, chunk, slot));
    }
    release(&s->acts[chunk], &s->act_of[c], mb, chunk);
}

static void run_table(struct schedule *s)
{
    const struct pipeline_table *t = s->table;
    struct gpt_model *m = s->model;
    for (int i = 0; i < t->n; i++) {
        const struct pipeline_action *a = &t->actions[i];
        int c = cell(s, a->mb, a->chunk);
        switch (a->op) {
        case PIPE_FORWARD: forward(s, a->mb, a->chunk); break;
        case PIPE_BACKWARD: backward(s, a->mb, a->chunk); break;
        case PIPE_SEND_FORWARD:
            add_op(s, true, gpt_chunk_output(m, a->chunk, holding(&s->acts[a->chunk], s->act_of[c], a->mb, a->chunk)),
                   a->peer, TAG_FORWARD);
            break;
        case PIPE_RECV_FORWARD:
            add_op(s, false, s->inputs[a->chunk].bufs[take(&s->inputs[a->chunk], &s->input_of[c], a->mb, a->chunk)],
                   a->peer, TAG_FORWARD);
            break;
        case PIPE_SEND_BACKWARD:
            add_op(s, true, s->grads[a->chunk].bufs[holding(&s->grads[a->chunk], s->grad_of[c], a->mb, a->chunk)],
                   a->peer, TAG_BACKWARD);
            s->sending[c] = true;
            break;
        case PIPE_RECV_BACKWARD:
            add_op(s, false, gpt_chunk_grad(m, a->chunk, holding(&s->acts[a->chunk], s->act_of[c], a->mb, a->chunk)),
                   a->peer, TAG_BACKWARD);
            break;
        }
        if (a->op != PIPE_FORWARD && a->op != PIPE_BACKWARD && a->wait) flush(s);
    }
    if (s->num_ops) BUG("pipeline: the table ends inside a batch");
}

/* Forward only: micro batch by micro batch, stage after stage; each rank receives a stage's input
 * from the rank before it into slot 0 and sends its output on, one message at a time. */
static void run_forward_only(struct schedule *s)
{
    int stages = s->pp * s->vp;
    for (int mb = 0; mb < s->num_micro_batches; mb++)
        for (int v = 0; v < s->vp; v++) {
            int stage = v * s->pp + s->pp_rank;
            if (stage > 0) {
                add_op(s, false, gpt_chunk_input(s->model, v, 0), (s->pp_rank + s->pp - 1) % s->pp, TAG_FORWARD);
                flush(s);
            }
            forward_into(s, mb, v, 0);
            if (stage < stages - 1) {
                add_op(s, true, gpt_chunk_output(s->model, v, 0), (s->pp_rank + 1) % s->pp, TAG_FORWARD);
                flush(s);
            }
        }
}

void schedule_run(struct schedule *s, struct schedule_step *step)
{
    int cells = s->num_micro_batches * s->vp;
    s->step = step;
    s->sync_started = false;
    step->loss_sum = step->num_tokens = 0.0;
    for (int mb = 0; mb < s->num_micro_batches; mb++) s->tokens[mb] = 0.0;
    bool loss = false;
    for (int v = 0; v < s->vp; v++) loss |= s->model->chunks[v].spec.post_process;
    if (loss) gpt_loss_take(s->model); /* the loss of these micro batches only */
    if (step->forward_only)
        run_forward_only(s);
    else
        run_table(s);
    if (loss) step->loss_sum = gpt_loss_take(s->model); /* the step's one wait for the device */
    for (int c = 0; c < cells; c++)
        if (s->act_of[c] >= 0 || s->input_of[c] >= 0 || s->grad_of[c] >= 0)
            BUG("pipeline: micro batch %d still holds buffers on chunk %d after the schedule", c / s->vp, c % s->vp);
    s->step = NULL;
}
