// ACL 20.08 glue of the armcl backend (see eqa_acl.h): u8·u8 -> S32 GEMMs.
//
// ACL pads the rows of the tensors its kernels read 16 bytes at a time, and the padded
// strides are known only after configure(). So: A is the arena bytes themselves when
// ACL asks no padding of it (import_memory), else one shared scratch matrix with ACL's
// strides that edgeq's im2col/copy fills; D (S32) is one shared scratch matrix; B is
// the constant weights themselves when ACL asks no padding of them, else copied once
// into ACL's padded layout (the copy stays: ACL 20.08 still reads B after the first
// run, freeing it crashed the second); ACL reshapes B on the first run.
// The workspace reported is the heap growth from the first configure to the end of the
// last first run: everything ACL or this glue keeps allocated.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "arm_compute/runtime/NEON/NEFunctions.h"
#include "arm_compute/runtime/Scheduler.h"
#include "arm_compute/runtime/Tensor.h"

#include "eqa_acl.h"

using namespace arm_compute;

struct eqa_gemm {
    Tensor a, b, d;
    NEGEMMLowpMatrixMultiplyCore f;
    const uint8_t *b_data = nullptr;
    int n = 0, k = 0;
    bool a_shared = false, ran = false;
};

namespace {
std::vector<eqa_gemm *> g_all;
uint8_t *g_a = nullptr;
int32_t *g_d = nullptr;
bool g_bound = false;
size_t g_workspace = 0;
size_t g_base = 0;  // heap bytes before the first GEMM was created
size_t g_gemms = 0, g_in_place = 0;  // GEMMs, and those reading A from the arena

// Bytes the process heap holds now: small blocks plus mmap-ed large ones.
size_t heap_bytes() {
    const struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

[[noreturn]] void fail(const char *what, const Status &s) {
    std::fprintf(stderr, "error: ACL %s: %s\n", what, s.error_description().c_str());
    std::exit(3);
}

void check(const char *what, const Status &s) {
    if (!bool(s)) fail(what, s);
}

bool unpadded(const Tensor &t) {
    const PaddingSize p = t.info()->padding();
    return p.top == 0 && p.right == 0 && p.bottom == 0 && p.left == 0;
}

void *aligned(size_t bytes) {
    void *p = nullptr;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        std::fprintf(stderr, "error: ACL scratch: out of memory (%zu bytes)\n", bytes);
        std::exit(3);
    }
    std::memset(p, 0, bytes);
    return p;
}

// The shared A and D matrices, sized for the largest GEMM, imported into every one.
void bind_scratch() {
    size_t a_bytes = 0, d_bytes = 0;
    for (eqa_gemm *g : g_all) {
        if (g->a_shared && g->a.info()->total_size() > a_bytes) a_bytes = g->a.info()->total_size();
        if (g->d.info()->total_size() > d_bytes) d_bytes = g->d.info()->total_size();
    }
    g_a = static_cast<uint8_t *>(aligned(a_bytes));
    g_d = static_cast<int32_t *>(aligned(d_bytes));
    for (eqa_gemm *g : g_all) {
        if (g->a_shared) check("import_memory (A)", g->a.allocator()->import_memory(g_a));
        check("import_memory (D)", g->d.allocator()->import_memory(g_d));
    }
    g_bound = true;
}
}  // namespace

extern "C" eqa_gemm *eqa_gemm_create(int m, int n, int k, const uint8_t *a, int a_signed,
                                     const uint8_t *b) {
    if (g_bound) {
        std::fprintf(stderr, "error: ACL: eqa_gemm_create after the first run\n");
        std::exit(3);
    }
    if (g_all.empty()) g_base = heap_bytes();
    // One thread, as the C backend's per-layer comparison runs single-threaded.
    Scheduler::set(Scheduler::Type::ST);
    eqa_gemm *g = new eqa_gemm;
    g->n = n;
    g->k = k;
    g->b_data = b;
    const QuantizationInfo qa(1.f, a_signed ? -128 : 0), qb(1.f, -128);
    g->a.allocator()->init(TensorInfo(TensorShape(k, m), 1, DataType::QASYMM8, qa));
    g->b.allocator()->init(TensorInfo(TensorShape(n, k), 1, DataType::QASYMM8, qb));
    g->d.allocator()->init(TensorInfo(TensorShape(n, m), 1, DataType::S32));
    const GEMMInfo info(false, false, true);
    check("NEGEMMLowpMatrixMultiplyCore::validate",
          NEGEMMLowpMatrixMultiplyCore::validate(g->a.info(), g->b.info(), nullptr, g->d.info(), info));
    g->f.configure(&g->a, &g->b, nullptr, &g->d, info);
    if (a != nullptr && unpadded(g->a))
        check("import_memory (A)", g->a.allocator()->import_memory(const_cast<uint8_t *>(a)));
    else
        g->a_shared = true;
    if (unpadded(g->b)) {  // ACL only reads B: the constant weights serve as they are
        check("import_memory (B)", g->b.allocator()->import_memory(const_cast<uint8_t *>(b)));
    } else {
        g->b.allocator()->allocate();
        const size_t bstride = g->b.info()->strides_in_bytes()[1];
        uint8_t *bp = g->b.buffer() + g->b.info()->offset_first_element_in_bytes();
        for (int r = 0; r < k; r++) std::memcpy(bp + r * bstride, b + (size_t)r * n, (size_t)n);
    }
    g_all.push_back(g);
    g_gemms++;
    g_in_place += !g->a_shared;
    return g;
}

extern "C" uint8_t *eqa_gemm_a(eqa_gemm *g) {
    if (!g_bound) bind_scratch();
    return g->a.buffer() + g->a.info()->offset_first_element_in_bytes();
}

extern "C" size_t eqa_gemm_a_stride(const eqa_gemm *g) { return g->a.info()->strides_in_bytes()[1]; }

extern "C" const int32_t *eqa_gemm_d(eqa_gemm *g) {
    if (!g_bound) bind_scratch();
    return reinterpret_cast<const int32_t *>(g->d.buffer() + g->d.info()->offset_first_element_in_bytes());
}

extern "C" size_t eqa_gemm_d_stride(const eqa_gemm *g) {
    return g->d.info()->strides_in_bytes()[1] / sizeof(int32_t);
}

extern "C" void eqa_gemm_run(eqa_gemm *g) {
    if (g->ran) {
        g->f.run();
        return;
    }
    // The first run reshapes B into ACL's workspace and allocates the rest. What stays
    // allocated since the first create is the workspace (the harness allocates nothing
    // while the model runs).
    if (!g_bound) bind_scratch();
    g->f.run();
    g->ran = true;
    const size_t now = heap_bytes();
    g_workspace = now > g_base ? now - g_base : 0;
}

extern "C" size_t eqa_workspace_bytes(void) { return g_workspace; }

// EQ_ACL_REPORT=1: print the workspace figure and how many GEMMs read A in place (the
// arena bytes themselves) on exit, for the Python side to read.
__attribute__((destructor)) static void report() {
    // plain counters only: g_all may already be destroyed when destructors run
    if (!std::getenv("EQ_ACL_REPORT")) return;
    std::fprintf(stderr, "acl_workspace_bytes %zu\n", g_workspace);
    std::fprintf(stderr, "acl_gemms %zu a_in_place %zu\n", g_gemms, g_in_place);
}
