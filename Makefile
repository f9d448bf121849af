# GNU Make build for the `megatron` binary and its tests.
#   make            builds ./megatron (CPU backend always; CUDA backend when nvcc is found)
#   make CUDA=0     CPU-only build
#   make demo       a short CPU pretraining run on mock data
#   make test       the whole test suite (unit, CLI, parity), installing test dependencies first
#   make fuzz       builds the fuzz targets (clang + libFuzzer); make fuzz-run runs each briefly

CC      ?= gcc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
BUILD   ?= build
FIXTURES ?= $(or $(MEGATRON_FIXTURES),../shared/fixtures)

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -I. -Wall -Wextra -Werror -fopenmp -g
CFLAGS  ?= -O2 -march=x86-64-v2
ALL_CFLAGS = $(CFLAGS_BASE) $(CFLAGS)
LDLIBS  = -fopenmp -lm -lpthread

# Everything but main.c and the CUDA kernels goes into one library that tests link against.
LIB_DIRS = util kernels kernels/cpu models parallel data optim ckpt
LIB_SRC  = $(wildcard $(addsuffix /*.c,$(LIB_DIRS))) $(wildcard args*.c) $(wildcard train*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)

CUDA_SRC = $(wildcard kernels/cuda/*.cu)
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCCFLAGS ?= -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=sm_90
ALL_CFLAGS += -DMEGATRON_CUDA -I$(CUDA_HOME)/include
CUDA_OBJ = $(CUDA_SRC:%.cu=$(BUILD)/%.o)
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublasLt -lcublas -lcudart -lnccl -lstdc++
endif

# Open MPI: everything compiles and links with it (multi-rank runs talk over MPI; CI tests them
# under mpirun). Without it, building says how to install it.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
ALL_CFLAGS += $(MPI_CFLAGS)
LDLIBS  += $(MPI_LIBS)
ifeq ($(strip $(MPI_LIBS)),)
MPI_MISSING = $(error Open MPI not found (no mpicc): run scripts/install_deps.sh, which installs libopenmpi-dev and openmpi-bin)
endif

# tests/test_*.c are cmocka binaries; tests/mpi_test_*.c too, run under mpirun by tests/run_all.sh.
TEST_SRC = $(wildcard tests/test_*.c) $(wildcard tests/mpi_test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIBS = -lcmocka

.PHONY: all demo test test-parity deps clean fuzz fuzz-deps fuzz-run format
all: megatron

megatron: $(BUILD)/main.o $(BUILD)/libmegatron.a
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/libmegatron.a: $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@) $(MPI_MISSING)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. -MMD -MP -c $< -o $@
# The GEMM and the attention backward of our own use Hopper's wgmma and TMA: built for sm_90a
# alone (used on such devices).
$(BUILD)/kernels/cuda/hopper_gemm.o $(BUILD)/kernels/cuda/flash_backward.o: \
    $(BUILD)/kernels/cuda/%.o: kernels/cuda/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(filter-out -gencode arch=%,$(NVCCFLAGS)) -gencode arch=compute_90a,code=sm_90a -I. \
	    -MMD -MP -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmegatron.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmegatron.a $(TEST_LIBS) $(LDLIBS)

# A first training run on the CPU with Megatron's mock data (no download needed).
demo: deps megatron
	scripts/demo.sh

# A few minutes of CPU pretraining on a real corpus (fetches GPT-2's tokenizer and the Jargon File
# when they are missing; scripts/demo_data.sh --corpus kjv for the King James Bible).
.PHONY: demo-data
demo-data: deps megatron
	scripts/demo_data.sh

# Installs (as root) or names what a fresh Debian/Ubuntu machine lacks for building and testing.
deps:
	@scripts/install_deps.sh --check >/dev/null 2>&1 || scripts/install_deps.sh

test: deps
	@$(MAKE) --no-print-directory megatron $(TEST_BIN)
	@FIXTURES=$(FIXTURES) BUILD=$(BUILD) tests/run_all.sh

# Parity of the GPT family with a Hugging Face fixture directory (see tests/test_parity.c).
FIXTURE ?= $(FIXTURES)/gpt2_tiny
test-parity: deps
	@$(MAKE) --no-print-directory $(BUILD)/tests/test_parity
	$(BUILD)/tests/test_parity $(FIXTURE)

FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
# train.c and plan.c (which reads train.c's model config) stay out: fuzz targets have no main program.
FUZZ_LIB_SRC = $(filter-out train.c train_step.c parallel/plan.c,$(LIB_SRC))
fuzz: $(FUZZ_BIN)
$(FUZZ_BIN): | fuzz-deps
fuzz-deps:
	@scripts/install_deps.sh --fuzz
$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIB_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp=libgomp \
	    $(MPI_CFLAGS) -o $@ $< $(FUZZ_LIB_SRC) -lm -lpthread -lgomp $(MPI_LIBS)
# New inputs go to a scratch corpus under $(BUILD); the committed seeds in fuzz/corpus stay as they are.
fuzz-run: fuzz
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); echo "== $$n"; mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	    $$f -max_total_time=$${FUZZ_SECONDS:-60} -timeout=5 $(BUILD)/fuzz/corpus-$$n fuzz/corpus/$$n || exit 1; done

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf $(BUILD) megatron

-include $(LIB_OBJ:.o=.d) $(BUILD)/main.d

# GPU checks, on a machine with a GPU (not part of `make test`): every CUDA op against the CPU op
# (tests/gpu/test_cuda_ops*.c), and timings of the GEMMs and attention (scripts/bench/bench_ops.c).
GPU_TEST  = $(BUILD)/tests/gpu/test_cuda_ops
GPU_BENCH = $(BUILD)/scripts/bench/bench_ops
$(GPU_TEST): $(wildcard tests/gpu/*.c) tests/gpu/cuda_test.h $(BUILD)/libmegatron.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.c,$^) $(BUILD)/libmegatron.a $(LDLIBS)
$(GPU_BENCH): scripts/bench/bench_ops.c $(BUILD)/libmegatron.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmegatron.a $(LDLIBS)
.PHONY: test-gpu bench-gpu
test-gpu: $(GPU_TEST)
	$(GPU_TEST)
bench-gpu: $(GPU_BENCH)
	$(GPU_BENCH)
# Every configuration cuBLASLt offers for one GEMM shape and epilogue, timed (scripts/bench/gemm_search.c)
$(BUILD)/scripts/bench/gemm_search: scripts/bench/gemm_search.c scripts/bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)
# Hopper GEMMs of our own (TMA, wgmma) for the two GeLU epilogues against cuBLASLt's, sm_90a only
# (scripts/bench/wgmma_gelu_probe.cu)
$(BUILD)/scripts/bench/wgmma_gelu_probe: scripts/bench/wgmma_gelu_probe.cu \
    scripts/bench/bench_util.h scripts/bench/probe_util.cuh kernels/cuda/hopper_gemm.cuh
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I. -o $@ $< -L$(CUDA_HOME)/lib64 \
	    -Xlinker -rpath -Xlinker $(CUDA_HOME)/lib64 -lcublasLt
# The same kernel's roles towards a cross-entropy fused into the output layer, sm_90a only
# (scripts/bench/output_layer_probe.cu)
$(BUILD)/scripts/bench/output_layer_probe: scripts/bench/output_layer_probe.cu \
    scripts/bench/bench_util.h scripts/bench/probe_util.cuh kernels/cuda/hopper_gemm.cuh
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I. -o $@ $< -L$(CUDA_HOME)/lib64 \
	    -Xlinker -rpath -Xlinker $(CUDA_HOME)/lib64 -lcublasLt
# NCCL all-reduce bus bandwidth through our communicators: mpirun -np N build/scripts/bench/nccl_bw
$(BUILD)/scripts/bench/nccl_bw: scripts/bench/nccl_bw.c $(BUILD)/libmegatron.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmegatron.a $(LDLIBS)

# Checkpoint speed on this machine's disk (not part of `make test`; needs about 18 GB of memory and
# 16 GB free on disk): ckpt_save/ckpt_load of a 1B GPT in bf16 with Adam state against `dd`.
# CKPT_BENCH_DIR=dir picks the disk, CKPT_BENCH_RUNS=n the repetitions (scripts/bench/ckpt_bench.sh).
CKPT_BENCH = $(BUILD)/scripts/bench/ckpt_bench
$(CKPT_BENCH): scripts/bench/ckpt_bench.c $(BUILD)/libmegatron.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmegatron.a $(LDLIBS)
.PHONY: bench-ckpt
bench-ckpt: $(CKPT_BENCH)
	BUILD=$(BUILD) scripts/bench/ckpt_bench.sh
-include $(CUDA_OBJ:.o=.d)
