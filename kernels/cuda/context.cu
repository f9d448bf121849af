/* The CUDA backend's context (device, stream, cuBLASLt and cuDNN handles, workspaces), created once
 * by cuda_init; device memory and copies, and the counts behind Megatron's memory report; error
 * reporting for every checked call; the shared column-sum finish kernel. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

/* cuBLASLt's workspace: 32 MiB is what NVIDIA recommends for Hopper. */
#define LT_WORKSPACE_BYTES ((size_t)32 << 20)

/* The process's one backend context (set once by cuda_init, like the process grid). */
static struct cuda_context g_ctx;

/* ---- errors ---- */

void cuda_fail_runtime(cudaError_t e, const char *call, const char *file, int line)
{
    if (e == cudaErrorMemoryAllocation)
        die_user("GPU memory: %s ran out of device memory; use a smaller micro batch or model, or "
                 "more model parallelism", call);
    die_internal(file, line, "CUDA: %s failed: %s (%s)", call, cudaGetErrorName(e),
                 cudaGetErrorString(e));
}

void cuda_fail_cublas(cublasStatus_t s, const char *call, const char *file, int line)
{
    die_internal(file, line, "cuBLASLt: %s failed: %s (%s)", call, cublasLtGetStatusName(s),
                 cublasLtGetStatusString(s));
}

void cuda_fail_cudnn(cudnnStatus_t s, const char *call, const char *file, int line)
{
    char last[512] = "";
    cudnnGetLastErrorString(last, sizeof last);
    die_internal(file, line, "cuDNN: %s failed: %s%s%s", call, cudnnGetErrorString(s),
                 last[0] ? ": " : "", last);
}

/* ---- memory counts (Megatron's memory report) ---- */

static void count_bytes(struct cuda_context *c, size_t bytes, bool add)
{
    c->memory.allocated = add ? c->memory.allocated + bytes : c->memory.allocated - bytes;
    if (c->memory.allocated > c->memory.max_allocated) c->memory.max_allocated = c->memory.allocated;
}

void cuda_memory_sample(void)
{
    struct cuda_context *c = cuda_ctx();
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    c->memory.in_use = total_b - free_b;
    if (c->memory.in_use > c->memory.max_in_use) c->memory.max_in_use = c->memory.in_use;
}

struct cuda_memory cuda_memory_report(void) { return cuda_ctx()->memory; }

/* ---- context ---- */

int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no GPU: clear the sticky error, report none */
        return 0;
    }
    return n;
}

void cuda_init(int device_index)
{
    if (g_ctx.ready) {
        if (device_index != g_ctx.device)
            BUG("cuda_init(%d) after cuda_init(%d): one process drives one GPU", device_index,
                g_ctx.device);
        return;
    }
    int count = cuda_device_count();
    if (device_index < 0 || device_index >= count)
        die_user("GPU %d: this machine has %d usable GPU(s); run one process per GPU, or run "
                 "without a GPU to use the CPU backend", device_index, count);
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index));
    /* the kernels are built as sm_90 and sm_90a machine code without PTX (the Makefile's
       NVCCFLAGS): another GPU has no image of them, and would fail at the first launch with the
       runtime's words */
    if (major != 9) {
        char name[300] = "";
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, device_index) == cudaSuccess)
            snprintf(name, sizeof name, " (%s)", prop.name);
        die_user("GPU %d%s: compute capability %d.%d: the CUDA backend's kernels are built for 9.0 "
                 "(Hopper); run on an H100 or H200, or with --device cpu", device_index, name, major,
                 minor);
    }
    CUDA_CHECK(cudaSetDevice(device_index));
    CUDA_CHECK(cudaDeviceGetAttribute(&g_ctx.sm_count, cudaDevAttrMultiProcessorCount,
                                      device_index));
    /* A blocking stream: legacy default-stream work (another library's copy) orders with it. */
    CUDA_CHECK(cudaStreamCreate(&g_ctx.stream));
    CUBLAS_CHECK(cublasLtCreate(&g_ctx.lt));
    CUDNN_CHECK(cudnnCreate(&g_ctx.dnn));
    CUDNN_CHECK(cudnnSetStream(g_ctx.dnn, g_ctx.stream));
    CUDA_CHECK(cudaMalloc(&g_ctx.lt_workspace, LT_WORKSPACE_BYTES));
    g_ctx.lt_workspace_bytes = LT_WORKSPACE_BYTES;
    count_bytes(&g_ctx, LT_WORKSPACE_BYTES, true);
    g_ctx.dgelu_forced = CUDA_DGELU_TIMED;
    g_ctx.hopper_gemm = major == 9 && minor == 0; /* hopper_gemm.cu is built for sm_90a alone */
    /* opt-in: where its time and cuBLASLt's are close the choice varies from run to run, and
       with it the last bits of a run's results (linear.cu) */
    const char *own = getenv("MEGATRON_HOPPER_GEMM");
    g_ctx.hopper_forced = own && strcmp(own, "1") == 0 ? HOPPER_GEMM_TIMED : HOPPER_GEMM_NEVER;
    /* on unless MEGATRON_FUSED_CE=0 (to time the step without it) */
    const char *fused = getenv("MEGATRON_FUSED_CE");
    g_ctx.fused_ce = g_ctx.hopper_gemm && !(fused && strcmp(fused, "0") == 0);
    const char *mlp = getenv("MEGATRON_FUSED_MLP");
    g_ctx.fused_mlp = g_ctx.hopper_gemm && !(mlp && strcmp(mlp, "0") == 0);
    const char *res = getenv("MEGATRON_FUSED_RESIDUAL");
    g_ctx.fused_residual = !(res && strcmp(res, "0") == 0);
    const char *flash = getenv("MEGATRON_FLASH_BACKWARD");
    g_ctx.flash_backward = CUDA_ATTENTION_BACKWARD_OURS; /* cudnn (or 0), heads: to time those */
    if (flash && (strcmp(flash, "cudnn") == 0 || strcmp(flash, "0") == 0))
        g_ctx.flash_backward = CUDA_ATTENTION_BACKWARD_CUDNN;
    if (flash && strcmp(flash, "heads") == 0) g_ctx.flash_backward = CUDA_ATTENTION_BACKWARD_HEADS;
    g_ctx.device = device_index;
    g_ctx.ready = true;
}

struct cuda_context *cuda_ctx(void)
{
    if (!g_ctx.ready) BUG("a CUDA op ran before cuda_init");
    return &g_ctx;
}

/* The grow-only buffer *buf (*held bytes) of at least bytes: regrown a quarter larger when short
 * (zeroed when zero), never while a CUDA graph is captured (what: the caller, for the message). */
static void *grown_buffer(void **buf, size_t *held, size_t bytes, bool zero, const char *what)
{
    struct cuda_context *c = cuda_ctx();
    if (bytes <= *held) return *buf;
    if (cuda_capturing())
        BUG("%s: %zu bytes needed while a CUDA graph is captured (%zu held): an op of the step "
            "ran for the first time in the capture", what, bytes, *held);
    /* Earlier kernels may still read the old buffer: drain the stream before freeing it. */
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    CUDA_CHECK(cudaFree(*buf));
    count_bytes(c, *held, false);
    c->memory_epoch++;
    size_t grown = cuda_align256(bytes + bytes / 4);
    *buf = NULL;
    *held = 0;
    CUDA_CHECK(cudaMalloc(buf, grown));
    if (zero) CUDA_CHECK(cudaMemsetAsync(*buf, 0, grown, c->stream));
    *held = grown;
    count_bytes(c, grown, true);
    return *buf;
}

void *cuda_scratch(size_t bytes)
{
    struct cuda_context *c = cuda_ctx();
    return grown_buffer(&c->scratch, &c->scratch_bytes, bytes, false, "cuda_scratch");
}

void *cuda_zeroed(size_t bytes)
{
    struct cuda_context *c = cuda_ctx();
    return grown_buffer(&c->zeroed, &c->zeroed_bytes, bytes, true, "cuda_zeroed");
}

bool cuda_zeroed_clear(void)
{
    struct cuda_context *c = cuda_ctx();
    if (c->zeroed_bytes == 0) return true;
    unsigned char *h = (unsigned char *)xmalloc(c->zeroed_bytes);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    CUDA_CHECK(cudaMemcpy(h, c->zeroed, c->zeroed_bytes, cudaMemcpyDeviceToHost));
    bool clear = true;
    for (size_t i = 0; i < c->zeroed_bytes && clear; i++) clear = h[i] == 0;
    free(h);
    return clear;
}

void cuda_need(const char *op, const char *name, struct tensor t, enum dtype dt)
{
    if (!tensor_present(t)) BUG("%s: %s is absent", op, name);
    if (t.device != DEV_CUDA || t.dtype != dt)
        BUG("%s: %s must be a %s tensor on the GPU (got %s%s)", op, name, dtype_name(dt),
            dtype_name(t.dtype), t.device == DEV_CUDA ? " on the GPU" : " on the CPU");
}

enum dtype cuda_need_lp(const char *op, const char *name, struct tensor t)
{
    if (!tensor_present(t)) BUG("%s: %s is absent", op, name);
    if (t.device != DEV_CUDA || (t.dtype != DT_BF16 && t.dtype != DT_F16))
        BUG("%s: %s must be a bf16 or fp16 tensor on the GPU (got %s%s)", op, name, dtype_name(t.dtype),
            t.device == DEV_CUDA ? " on the GPU" : " on the CPU");
    return t.dtype;
}

void cuda_maybe(const char *op, const char *name, struct tensor t, enum dtype dt)
{
    if (tensor_present(t)) cuda_need(op, name, t, dt);
}

/* ---- memory ---- */

void *cuda_alloc(size_t bytes)
{
    cuda_ctx();
    if (bytes == 0) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        die_user("GPU memory: allocating %.2f GiB failed with %.2f GiB free of %.2f GiB; use a "
                 "smaller micro batch or model, or more model parallelism",
                 bytes / 1073741824.0, free_b / 1073741824.0, total_b / 1073741824.0);
    }
    CUDA_CHECK(e);
    struct cuda_context *c = cuda_ctx();
    if (c->num_blocks == c->cap_blocks) {
        c->cap_blocks = c->cap_blocks ? 2 * c->cap_blocks : 64;
        c->blocks = (struct cuda_block *)realloc(c->blocks, c->cap_blocks * sizeof *c->blocks);
        if (!c->blocks) die_user("out of memory: the GPU allocation table");
    }
    c->blocks[c->num_blocks].p = p;
    c->blocks[c->num_blocks++].bytes = bytes;
    count_bytes(c, bytes, true);
    return p;
}

void cuda_free(void *p)
{
    if (!p) return;
    CUDA_CHECK(cudaFree(p));
    struct cuda_context *c = cuda_ctx();
    for (size_t i = 0; i < c->num_blocks; i++)
        if (c->blocks[i].p == p) {
            count_bytes(c, c->blocks[i].bytes, false);
            c->blocks[i] = c->blocks[--c->num_blocks];
            return;
        }
    BUG("cuda_free(%p): not from cuda_alloc", p);
}

void cuda_memcpy_h2d(void *dst, const void *src, size_t bytes)
{
    struct cuda_context *c = cuda_ctx();
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

/* The slots grow (after the stream drained: queued copies may still read them) to fit bytes. */
static void staging_grow(struct cuda_context *c, size_t bytes)
{
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (!c->staging)
        for (int k = 0; k < CUDA_STAGING_SLOTS; k++)
            CUDA_CHECK(cudaEventCreateWithFlags(&c->staging_done[k], cudaEventDisableTiming));
    CUDA_CHECK(cudaFreeHost(c->staging));
    size_t slot = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); /* whole MiB */
    c->staging = NULL;
    c->staging_slot_bytes = 0;
    CUDA_CHECK(cudaMallocHost((void **)&c->staging, slot * CUDA_STAGING_SLOTS));
    c->staging_slot_bytes = slot;
}

void cuda_memcpy_h2d_staged(void *dst, const void *src, size_t bytes)
{
    struct cuda_context *c = cuda_ctx();
    if (bytes == 0) return;
    if (bytes > c->staging_slot_bytes) staging_grow(c, bytes);
    int k = c->staging_next;
    c->staging_next = (k + 1) % CUDA_STAGING_SLOTS;
    /* the slot's previous copy has run (long ago, unless the host is 16 copies ahead) */
    CUDA_CHECK(cudaEventSynchronize(c->staging_done[k]));
    unsigned char *slot = c->staging + (size_t)k * c->staging_slot_bytes;
    memcpy(slot, src, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaEventRecord(c->staging_done[k], c->stream));
}

void cuda_memcpy_d2h(void *dst, const void *src, size_t bytes)
{
    struct cuda_context *c = cuda_ctx();
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

void cuda_memset_zero(void *dst, size_t bytes)
{
    struct cuda_context *c = cuda_ctx();
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, c->stream));
}

void cuda_synchronize(void) { CUDA_CHECK(cudaStreamSynchronize(cuda_ctx()->stream)); }

void *cuda_stream(void) { return cuda_ctx()->stream; }
