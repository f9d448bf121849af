/* CUDA graphs of the training step: everything the host queues on the backend's stream between
 * cuda_graph_begin and cuda_graph_end is captured into a graph instead of run, and
 * cuda_graph_launch runs the whole of it again with one call. A graph holds the device pointers
 * it was captured with, so the backend counts every time it frees memory a captured launch may
 * use (the shared scratch): a graph from another count must be captured again. */
#include <stdlib.h>

#include "kernels/cuda/cuda_common.h"

struct cuda_graph {
    cudaGraphExec_t exec;
    uint64_t epoch;
    size_t nodes;
};

bool cuda_graph_allowed(void)
{
    const char *off = getenv("MEGATRON_CUDA_GRAPH");
    if (off && strcmp(off, "0") == 0) return false;
    const char *timing = getenv("MEGATRON_OP_TIMING"); /* its events are read by the host per op */
    return !(timing && *timing);
}

void cuda_graph_begin(void)
{
    struct cuda_context *c = cuda_ctx();
    /* this thread's calls only: another thread's (the data loader's) are not part of the step */
    CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
}

struct cuda_graph *cuda_graph_end(void)
{
    struct cuda_context *c = cuda_ctx();
    cudaGraph_t graph = NULL;
    CUDA_CHECK(cudaStreamEndCapture(c->stream, &graph));
    struct cuda_graph *g = (struct cuda_graph *)calloc(1, sizeof *g);
    if (!g) die_user("out of memory: a CUDA graph's handle");
    CUDA_CHECK(cudaGraphGetNodes(graph, NULL, &g->nodes));
    CUDA_CHECK(cudaGraphInstantiate(&g->exec, graph, 0));
    CUDA_CHECK(cudaGraphDestroy(graph));
    g->epoch = c->memory_epoch;
    return g;
}

bool cuda_graph_current(const struct cuda_graph *g) { return g && g->epoch == cuda_ctx()->memory_epoch; }

size_t cuda_graph_nodes(const struct cuda_graph *g) { return g ? g->nodes : 0; }

void cuda_graph_launch(struct cuda_graph *g)
{
    if (!cuda_graph_current(g)) BUG("cuda_graph_launch: the graph uses memory freed since its capture");
    CUDA_CHECK(cudaGraphLaunch(g->exec, cuda_ctx()->stream));
}

void cuda_graph_free(struct cuda_graph *g)
{
    if (!g) return;
    CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    free(g);
}

bool cuda_capturing(void)
{
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(cuda_ctx()->stream, &st));
    return st != cudaStreamCaptureStatusNone;
}
