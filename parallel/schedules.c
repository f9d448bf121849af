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
    struct comm_p2p_handle **busy; /* a send still reading the entry: wait before writing it */
};

/* What a communication action of the batch being gathered does with the batch's handle. */
struct op_mark {
    enum pipeline_op op;
    int cell, entry;
};

struct schedule {
    struct gpt_model *model;
    const struct pipeline_table *table;
    int pp, vp, pp_rank, num_micro_batches;
    struct comm_group *pp_group;
    struct pool *acts, *inputs, *grads; /* [vp] */
    /* per (micro batch, chunk): the slot or buffer it holds of each pool, -1 when none */
    int *act_of, *input_of, *grad_of;
    /* per (micro batch, chunk): the batch that receives its input / its output's gradient */
    struct comm_p2p_handle **input_ready, **grad_ready;
    double *tokens;     /* [M]: tokens of each micro batch's loss */
    struct comm_p2p *ops;
    struct op_mark *marks;
    int num_ops;
    bool overlap;       /* --overlap-p2p-communication: batches are waited for where their data are used */
    struct comm_p2p_handle **handles; /* the step's batches, freed at its end */
    int num_handles, cap_handles;
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
            if (p->busy[k]) comm_p2p_wait(p->busy[k]); /* its last send has read it */
            p->busy[k] = NULL;
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
    p->busy = xcalloc((size_t)(count > 0 ? count : 1), sizeof *p->busy);
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
    free(p->busy);
}

struct schedule *schedule_create(struct gpt_model *m, const struct pipeline_schedule *sched, int pp_rank,
                                 struct comm_group *pp_group, bool overlap_p2p)
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
    s->input_ready = xcalloc((size_t)cells, sizeof *s->input_ready);
    s->grad_ready = xcalloc((size_t)cells, sizeof *s->grad_ready);
    s->tokens = xcalloc((size_t)sched->num_micro_batches, sizeof *s->tokens);
    s->ops = xmalloc((size_t)(2 * cells + 2) * sizeof *s->ops);
    s->marks = xmalloc((size_t)(2 * cells + 2) * sizeof *s->marks);
    s->overlap = overlap_p2p;
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
    free(s->input_ready);
    free(s->grad_ready);
    free(s->tokens);
    free(s->ops);
    free(s->marks);
    free(s->handles);
    free(s);
}

static void add_op(struct schedule *s, bool send, struct tensor t, int peer, int tag, struct op_mark mark)
{
    s->marks[s->num_ops] = mark;
    s->ops[s->num_ops++] = (struct comm_p2p){send, t.data, (size_t)tensor_numel(t), peer, tag};
}

/* Starts the gathered batch. Without overlap it is waited for at once; with it, where its data
 * are used: a received input before its forward, a received gradient before its backward, a
 * sent buffer before it is written again. An outgoing gradient's buffer is free for the next
 * take once the batch has read it. */
static void flush(struct schedule *s)
{
    struct gpt_model *m = s->model;
    enum comm_dtype dt = comm_dtype_of(m->activation_dtype);
    if (s->num_ops == 0) return;
    struct comm_p2p_handle *h = comm_p2p_start(s->pp_group, s->ops, s->num_ops, dt, m->device == DEV_CUDA);
    if (s->num_handles == s->cap_handles) {
        s->cap_handles = s->cap_handles ? 2 * s->cap_handles : 64;
        s->handles = xrealloc(s->handles, (size_t)s->cap_handles * sizeof *s->handles);
    }
    s->handles[s->num_handles++] = h;
    if (!s->overlap) comm_p2p_wait(h);
    for (int i = 0; i < s->num_ops; i++) {
        const struct op_mark *k = &s->marks[i];
        int chunk = k->cell % s->vp, mb = k->cell / s->vp;
        switch (k->op) {
        case PIPE_SEND_FORWARD: s->acts[chunk].busy[k->entry] = h; break;
        case PIPE_RECV_FORWARD: s->input_ready[k->cell] = h; break;
        case PIPE_SEND_BACKWARD:
            s->grads[chunk].busy[k->entry] = h;
            release(&s->grads[chunk], &s->grad_of[k->cell], mb, chunk);
            break;
        case PIPE_RECV_BACKWARD: s->grad_ready[k->cell] = h; break;
        default: BUG("pipeline: compute action in a batch");
        }
    }
    s->num_ops = 0;
}

/* Waits (where overlapped) for the batch that delivers what is about to be used. */
static void ready(struct comm_p2p_handle **h)
{
    if (*h) comm_p2p_wait(*h);
    *h = NULL;
}

/* The forward of (mb, chunk) into activation slot `slot`, its input already in place. */
static void forward_into(struct schedule *s, int mb, int chunk, int slot)
{
    struct schedule_step *st = s->step;
    struct gpt_batch b = st->batches[mb];
    if (!st->forward_only) { /* the loss gradient is known at the forward: computed there */
        b.loss_scale = st->loss_scale;
        b.loss_divisor = st->loss_divisor;
        b.per_token_loss = st->per_token_loss;
    }
    double tokens = gpt_forward_chunk(s->model, chunk, slot, &b);
    if (!s->model->chunks[chunk].spec.post_process) return;
    s->tokens[mb] = tokens;
}

static void forward(struct schedule *s, int mb, int chunk)
{
    int c = cell(s, mb, chunk), slot = take(&s->acts[chunk], &s->act_of[c], mb, chunk);
    if (!s->model->chunks[chunk].spec.pre_process) { /* the input received earlier */
        struct pool *in = &s->inputs[chunk];
        ready(&s->input_ready[c]);
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
    g.write_weight_grads = st->first_backward_writes && mb == 0; /* a chunk's backwards run in order */
    if (mb == s->num_micro_batches - 1 && st->ddp) { /* the chunk's last backward: its grads become final */
        if (!s->sync_started) ddp_start_grad_sync(st->ddp);
        s->sync_started = true;
        if (st->overlap_grad_reduce) {
            g.on_grads_ready = ddp_grads_ready;
            g.hook_ctx = st->ddp;
        }
    }
    ready(&s->grad_ready[c]);
    double tokens = s->tokens[mb] > 0 && !st->per_token_loss ? s->tokens[mb] : 1.0;
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
        int c = cell(s, a->mb, a->chunk), k;
        struct pool *acts = &s->acts[a->chunk], *inputs = &s->inputs[a->chunk], *grads = &s->grads[a->chunk];
        switch (a->op) {
        case PIPE_FORWARD: forward(s, a->mb, a->chunk); break;
        case PIPE_BACKWARD: backward(s, a->mb, a->chunk); break;
        case PIPE_SEND_FORWARD:
            k = holding(acts, s->act_of[c], a->mb, a->chunk);
            add_op(s, true, gpt_chunk_output(m, a->chunk, k), a->peer, TAG_FORWARD, (struct op_mark){a->op, c, k});
            break;
        case PIPE_RECV_FORWARD:
            k = take(inputs, &s->input_of[c], a->mb, a->chunk);
            add_op(s, false, inputs->bufs[k], a->peer, TAG_FORWARD, (struct op_mark){a->op, c, k});
            break;
        case PIPE_SEND_BACKWARD:
            k = holding(grads, s->grad_of[c], a->mb, a->chunk);
            add_op(s, true, grads->bufs[k], a->peer, TAG_BACKWARD, (struct op_mark){a->op, c, k});
            break;
        case PIPE_RECV_BACKWARD:
            k = holding(acts, s->act_of[c], a->mb, a->chunk);
            add_op(s, false, gpt_chunk_grad(m, a->chunk, k), a->peer, TAG_BACKWARD, (struct op_mark){a->op, c, k});
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
    bool overlap = s->overlap;
    s->overlap = false;
    for (int mb = 0; mb < s->num_micro_batches; mb++)
        for (int v = 0; v < s->vp; v++) {
            int stage = v * s->pp + s->pp_rank, c = cell(s, mb, v);
            if (stage > 0) {
                add_op(s, false, gpt_chunk_input(s->model, v, 0), (s->pp_rank + s->pp - 1) % s->pp, TAG_FORWARD,
                       (struct op_mark){PIPE_RECV_FORWARD, c, 0});
                flush(s);
                s->input_ready[c] = NULL;
            }
            forward_into(s, mb, v, 0);
            if (stage < stages - 1) {
                add_op(s, true, gpt_chunk_output(s->model, v, 0), (s->pp_rank + 1) % s->pp, TAG_FORWARD,
                       (struct op_mark){PIPE_SEND_FORWARD, c, 0});
                flush(s);
                s->acts[v].busy[0] = NULL;
            }
        }
    s->overlap = overlap;
}

void schedule_run(struct schedule *s, struct schedule_step *step)
{
    int cells = s->num_micro_batches * s->vp;
    s->step = step;
    s->sync_started = false;
    for (int mb = 0; mb < s->num_micro_batches; mb++) s->tokens[mb] = 0.0;
    bool loss = false;
    for (int v = 0; v < s->vp; v++) loss |= s->model->chunks[v].spec.post_process;
    if (loss) gpt_loss_reset(s->model); /* the loss of these micro batches only */
    if (step->forward_only)
        run_forward_only(s);
    else
        run_table(s);
    for (int c = 0; c < cells; c++)
        if (s->act_of[c] >= 0 || s->input_of[c] >= 0 || s->grad_of[c] >= 0 || s->input_ready[c] || s->grad_ready[c])
            BUG("pipeline: micro batch %d still holds buffers on chunk %d after the schedule", c / s->vp, c % s->vp);
    /* every batch done before the gradients are reduced and the buffers written again */
    for (int i = 0; i < s->num_handles; i++) comm_p2p_free(s->handles[i]);
    s->num_handles = 0;
    for (int v = 0; v < s->vp; v++) {
        memset(s->acts[v].busy, 0, (size_t)(s->acts[v].count > 0 ? s->acts[v].count : 1) * sizeof(void *));
        memset(s->inputs[v].busy, 0, (size_t)(s->inputs[v].count > 0 ? s->inputs[v].count : 1) * sizeof(void *));
        memset(s->grads[v].busy, 0, (size_t)(s->grads[v].count > 0 ? s->grads[v].count : 1) * sizeof(void *));
    }
    s->step = NULL;
}
