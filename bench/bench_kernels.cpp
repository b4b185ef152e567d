// Times the engine with no Python in between. First it checks every GEMM kernel the build
// carries (and this CPU can run) against a plain double-precision product on edge cases;
// then it times each kernel, on one thread, beside Eigen's product compiled with the same
// flags (bench/eigen_gemm.cpp); then Model::forward and Model::backward on the shapes of
// bench_train.py with the default kernels, counting the heap allocations made by
// steady-state training steps (there should be none). Build and run:
//
//   cmake -S . -B build/bench -DRNNEXT_BENCH=ON -DCMAKE_BUILD_TYPE=Release \
//         -DPython_EXECUTABLE=$(which python) -Dpybind11_DIR=$(python -m pybind11 --cmakedir)
//   cmake --build build/bench --target bench_kernels && build/bench/bench_kernels [threads] [seconds] [gemm]
//
// (`gemm`: the kernels only, not the model shapes)
//
// The exit status is 1 when a kernel gives a wrong product.
//
// Compare its forward + backward time with bench_train.py's rnnext step to see what the
// binding, the loss and the SGD update in Python cost.
#include "model.hpp"

#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

// ---- allocation counting: every heap allocation goes through these in this program.
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}
static std::atomic<long> g_allocs{0};
extern "C" void* malloc(size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}
extern "C" void* calloc(size_t a, size_t b) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(a, b);
}
extern "C" void* realloc(void* p, size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, n);
}
extern "C" void* aligned_alloc(size_t a, size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(a, n);
}
extern "C" int posix_memalign(void** p, size_t a, size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;  // ENOMEM
}

using namespace rnnext;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Shape {
    const char* name;
    Index I, H, O, B, T;
    Act act;
};

struct Timing {
    double min = 1e30, median = 0;
};

template <class F>
static Timing time_it(F&& f, double budget) {
    std::vector<double> ts;
    const auto start = Clock::now();
    while (ts.size() < 5 || (seconds_since(start) < budget && ts.size() < 2000)) {
        const auto t0 = Clock::now();
        f();
        ts.push_back(seconds_since(t0));
    }
    std::sort(ts.begin(), ts.end());
    return {ts.front(), ts[ts.size() / 2]};
}

static void bench_shape(const Shape& s, double budget) {
    Config c;
    c.input_size = s.I;
    c.hidden_size = s.H;
    c.output_size = s.O;
    c.act = s.act;
    Model<float> m(c);
    std::mt19937 rng(0);
    const float k = 1.0f / std::sqrt(float(s.H));
    std::uniform_real_distribution<float> u(-k, k);
    std::normal_distribution<float> n01(0.f, 1.f);
    for (std::size_t i = 0; i < m.size(); ++i) m.params()[i] = u(rng);
    const Index F = s.O ? s.O : s.H;
    std::vector<float> x(s.T * s.B * s.I), grad(s.T * s.B * F), y(s.T * s.B * F), h_n(s.B * s.H), dx(x.size()),
        dh0(s.B * s.H), norms(s.T);
    for (auto& v : x) v = n01(rng);
    for (auto& v : grad) v = 0.01f * n01(rng);
    auto fwd = [&] { m.forward(y.data(), h_n.data(), x.data(), nullptr, nullptr, nullptr, s.T, s.B, true); };
    auto bwd = [&] { m.backward(dx.data(), dh0.data(), norms.data(), grad.data(), nullptr, true); };
    fwd();
    bwd();  // workspaces and per-thread packing buffers are allocated here, once
    const long before = g_allocs.load();
    for (int r = 0; r < 3; ++r) {
        fwd();
        bwd();
    }
    const long allocs = g_allocs.load() - before;
    const Timing tf = time_it(fwd, budget / 2);
    // backward() needs its forward() first: time the pair.
    const Timing tfb = time_it([&] { fwd(), bwd(); }, budget / 2);
    const double flops = 6.0 * s.T * s.B * (s.I * s.H + s.H * s.H + s.H * s.O);
    std::printf("%-10s (%4ld,%5ld,%4ld,%3ld,%4ld)  fwd %9.3f ms  fwd+bwd %9.3f ms (median %9.3f)  %6.1f GFLOP/s  "
                "allocs/step %ld  workspace %.2f MiB\n",
                s.name, long(s.I), long(s.H), long(s.O), long(s.B), long(s.T), tf.min * 1e3, tfb.min * 1e3,
                tfb.median * 1e3, flops / tfb.min / 1e9, allocs / 3, m.workspace_bytes() / 1048576.0);
    std::printf("%-10s kept between calls %.2f x T*B*H*4 (%.2f without the copy of x)\n", s.name, m.workspace_bytes() / (4.0 * s.T * s.B * s.H), (m.workspace_bytes() - 4.0 * s.T * s.B * s.I) / (4.0 * s.T * s.B * s.H));
}

// ---- every kernel the build carries, with Eigen's product built with the same flags

namespace rnnext {
using EigenGemm = void (*)(Index, Index, Index, const float*, const float*, float*);
#if defined(RNNEXT_GEMM_MULTI_ISA)
void eigen_gemm_v4(Index, Index, Index, const float*, const float*, float*);
void eigen_gemm_v3(Index, Index, Index, const float*, const float*, float*);
#endif
void eigen_gemm_base(Index, Index, Index, const float*, const float*, float*);
}  // namespace rnnext

struct Kernels {
    const GemmTable* table;
    EigenGemm eigen;
};

// The kernels this CPU can run, best first (the choice gemm_table() makes without
// RNNEXT_GEMM_ISA is the first).
static std::vector<Kernels> runnable_kernels() {
    std::vector<Kernels> out;
#if defined(RNNEXT_GEMM_MULTI_ISA)
    __builtin_cpu_init();
#if defined(RNNEXT_GEMM_TOP_IS_NATIVE)
    const bool v4 = true;
#else
    const bool v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    if (v4) out.push_back({&gemm_table_v4, &eigen_gemm_v4});
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back({&gemm_table_v3, &eigen_gemm_v3});
#endif
    out.push_back({&gemm_table_base, &eigen_gemm_base});
    return out;
}

// C = [C +] op(A) op(B) [+ bias] in long double, the reference of the check.
template <class T>
static void reference_gemm(const GemmArgs<T>& g, const T* B, std::vector<T>& C) {
    for (Index i = 0; i < g.M; ++i)
        for (Index j = 0; j < g.N; ++j) {
            long double s = g.accumulate ? C[i * g.ldc + j] : g.bias ? g.bias[j] : T(0);
            for (Index k = 0; k < g.K; ++k)
                s += (long double)(g.transA ? g.A[k * g.lda + i] : g.A[i * g.lda + k]) *
                     (g.transB ? B[j * g.ldb + k] : B[k * g.ldb + j]);
            C[i * g.ldc + j] = T(s);
        }
}

// One product through fns.gemm, B packed or not, against the reference; C has padding
// columns (ldc > N) that must stay untouched. Returns the worst error in units of
// eps * sum |a||b|.
template <class T>
static double check_one(const GemmFns<T>& fns, Index M, Index N, Index K, bool ta, bool tb, bool packed, bool acc,
                        bool bias, std::mt19937& rng) {
    std::uniform_real_distribution<double> u(-1, 1);
    const Index lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
    std::vector<T> A((ta ? K : M) * lda + 1), B((tb ? N : K) * ldb + 1), C(M * ldc + 1), bv(N + 1);
    for (auto& v : A) v = T(u(rng));
    for (auto& v : B) v = T(u(rng));
    for (auto& v : C) v = T(u(rng));
    for (auto& v : bv) v = T(u(rng));
    std::vector<T> want = C, Bp;
    GemmArgs<T> g{M, N, K, A.data(), lda, ta, B.data(), ldb, tb, nullptr, C.data(), ldc, acc, bias ? bv.data() : nullptr};
    if (packed) {
        const Index nr = fns.nr;
        Bp.assign(K * ((N + nr - 1) / nr) * nr + 1, T(7));
        fns.pack_b(Bp.data(), B.data(), ldb, tb, K, N);
        g.Bp = Bp.data();
        g.B = nullptr;
    }
    fns.gemm(g);
    reference_gemm(g, B.data(), want);
    double worst = 0;
    const double eps = sizeof(T) == 4 ? 1.2e-7 : 2.3e-16;
    for (Index i = 0; i < M; ++i)
        for (Index j = 0; j < ldc; ++j) {
            const double d = std::abs(double(C[i * ldc + j]) - double(want[i * ldc + j]));
            if (j >= N) {  // padding: must be bit-identical
                if (d != 0) return 1e30;
                continue;
            }
            worst = std::max(worst, d / (eps * (double(K) + 3)));  // |a|,|b|,|c| <= 1
        }
    return worst;
}

// Edge cases (sizes 0..3, not multiples of MR or NR, past every blocking size, one row),
// transposed A and B, B packed, accumulate, bias, float and double. Returns the failures.
template <class T>
static int check_kernels(const GemmFns<T>& fns, const char* isa, const char* type) {
    std::mt19937 rng(1);
    const GemmBlocking b = fns.blocking();
    const Index nr = fns.nr;
    std::vector<std::array<Index, 3>> shapes;
    for (Index M : {0, 1, 2, 3, 5, 7, 13, 25})
        for (Index N : {Index(0), Index(1), Index(3), nr - 1, nr + 1, 2 * nr + 3, 5 * nr + 3})
            for (Index K : {0, 1, 2, 3, 17}) shapes.push_back({M, N, K});
    shapes.push_back({b.mc + 5, 2 * nr + 3, b.kc + 9});  // past MC and KC
    shapes.push_back({5, b.nc + nr + 3, 9});              // past NC
    shapes.push_back({31, b.nc + 3, 2 * b.kc + 1});
    shapes.push_back({1, 2048 + 5 * nr + 3, 37});      // one row: the matrix-vector pass, 2 column blocks
    int fails = 0, cases = 0;
    double worst = 0;
    for (const auto& s : shapes)
        for (int f = 0; f < 32; ++f) {
            const bool ta = f & 1, tb = f & 2, packed = f & 4, acc = f & 8, bias = f & 16;
            const double e = check_one<T>(fns, s[0], s[1], s[2], ta, tb, packed, acc, bias, rng);
            ++cases;
            worst = std::max(worst, e);
            if (e > 4) {  // error bound: (K + 3) eps per value with |a|, |b|, |c| <= 1; 4x margin
                if (++fails <= 5)
                    std::printf("  FAIL %s %s M=%ld N=%ld K=%ld transA=%d transB=%d packed=%d accumulate=%d bias=%d: "
                                "error %.3g\n",
                                isa, type, long(s[0]), long(s[1]), long(s[2]), ta, tb, packed, acc, bias, e);
            }
        }
    std::printf("check %-7s %-6s %5d products: %s (worst error %.3f of the bound (K+3)*eps)\n", isa, type, cases,
                fails ? "FAILED" : "ok", worst);
    return fails;
}

static double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

static double gflops(Index M, Index N, Index K, double s) { return 2.0 * M * N * K / s / 1e9; }

// One kernel at one size on this thread: B as given, B packed beforehand (as the
// recurrence uses W_h; packing not timed), and Eigen's product with the same flags.
static void bench_kernel(const Kernels& k, Index M, Index N, Index K, double budget) {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const GemmFns<float>& f = k.table->f32;
    Mat A = Mat::Random(M, K), B = Mat::Random(K, N), C(M, N), C2(M, N);
    std::vector<float> Bp(K * ((N + f.nr - 1) / f.nr) * f.nr);
    f.pack_b(Bp.data(), B.data(), N, false, K, N);
    // Interleaved rounds, so that a change of load on a shared machine hits all three alike;
    // small products are repeated within a round, as the clock is too coarse for one.
    const int rep = int(std::max<double>(1, std::min<double>(1000, 1e6 / (double(M) * N * K))));
    // Wall time, and the thread's CPU time, which leaves out the time another process held
    // the core (but not what it did to the caches).
    double wall[3] = {1e30, 1e30, 1e30}, cpu[3] = {1e30, 1e30, 1e30};
    const auto start = Clock::now();
    for (int r = 0; r < 3 || (r < 2000 && seconds_since(start) < budget); ++r)
        for (int which = 0; which < 3; ++which) {
            const auto w0 = Clock::now();
            const double c0 = thread_cpu_seconds();
            for (int i = 0; i < rep; ++i) {
                if (which == 0)
                    f.gemm({M, N, K, A.data(), K, false, B.data(), N, false, nullptr, C.data(), N, false});
                else if (which == 1)
                    f.gemm({M, N, K, A.data(), K, false, nullptr, 0, false, Bp.data(), C.data(), N, false});
                else
                    k.eigen(M, N, K, A.data(), B.data(), C2.data());
            }
            cpu[which] = std::min(cpu[which], (thread_cpu_seconds() - c0) / rep);
            wall[which] = std::min(wall[which], seconds_since(w0) / rep);
        }
    std::printf("%-7s %5ldx%5ldx%5ld  %7.1f  %8.1f  %7.1f  %6.2f   %7.1f  %8.1f  %7.1f  %6.2f   %.2g\n", k.table->isa,
                long(M), long(N), long(K), gflops(M, N, K, cpu[0]), gflops(M, N, K, cpu[1]), gflops(M, N, K, cpu[2]),
                cpu[2] / cpu[0], gflops(M, N, K, wall[0]), gflops(M, N, K, wall[1]), gflops(M, N, K, wall[2]),
                wall[2] / wall[0], double((C - C2).cwiseAbs().maxCoeff()));
}

// The default kernels through the thread pool (gemm<float>), against the host's Eigen.
static void bench_gemm(Index M, Index N, Index K, double budget) {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Mat A = Mat::Random(M, K), B = Mat::Random(K, N), C(M, N), C2(M, N);
    const Timing ours = time_it([&] { gemm<float>({M, N, K, A.data(), K, false, B.data(), N, false, nullptr,
                                                   C.data(), N, false}); },
                                budget / 2);
    const Timing eig = time_it([&] { C2.noalias() = A * B; }, budget / 2);
    std::printf("gemm %5ldx%5ldx%5ld  packed (%s, %d threads) %7.1f GFLOP/s   Eigen 3.4 (1 thread) %7.1f GFLOP/s   "
                "max |diff| %.2g\n",
                long(M), long(N), long(K), gemm_table().isa, get_num_threads(), gflops(M, N, K, ours.min),
                gflops(M, N, K, eig.min), double((C - C2).cwiseAbs().maxCoeff()));
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : available_cores();
    const double budget = argc > 2 ? std::atof(argv[2]) : 2.0;
    const bool gemm_only = argc > 3 && std::string(argv[3]) == "gemm";  // skip the model shapes
    const std::vector<Kernels> kernels = runnable_kernels();
    int fails = 0;
    for (const Kernels& k : kernels) {
        fails += check_kernels<float>(k.table->f32, k.table->isa, "float");
        fails += check_kernels<double>(k.table->f64, k.table->isa, "double");
    }
    std::printf("-- GEMM kernels, 1 thread, float32, GFLOP/s (best of the timed runs); Eigen 3.4 built with the "
                "kernel's flags\n");
    for (const Kernels& k : kernels) {
        const GemmBlocking b = k.table->f32.blocking();
        std::printf("%s: NR %ld floats, KC %ld, MC %ld, NC %ld\n", k.table->isa, long(k.table->f32.nr), long(b.kc),
                    long(b.mc), long(b.nc));
    }
    std::printf("                          ------ thread CPU time ------   ---------- wall time ----------\n"
                "kernel     M x    N x    K   rnnext  packed-B   Eigen  rnnext/   rnnext  packed-B   Eigen  rnnext/  max |diff|\n"
                "                                                        Eigen                              Eigen\n");
    const Index sizes[][3] = {{2048, 2048, 2048}, {3200, 1024, 1024}, {64, 1024, 1024},
                              {16, 1760, 1760},   {1, 1024, 1024},    {1, 64, 64}};
    for (const auto& s : sizes)
        for (const Kernels& k : kernels) bench_kernel(k, s[0], s[1], s[2], budget);
    if (gemm_only) return fails ? 1 : 0;
    const Shape shapes[] = {
        {"latency", 32, 64, 32, 1, 200, Act::tanh},      {"small", 64, 128, 64, 16, 100, Act::tanh},
        {"medium", 128, 256, 128, 32, 100, Act::tanh},   {"large", 512, 1024, 512, 64, 50, Act::tanh},
        {"deepbench", 1760, 1760, 0, 16, 50, Act::relu},
    };
    for (int t : {1, threads}) {
        set_num_threads(t);
        std::printf("-- %d thread(s), kernels: %s\n", t, gemm_table().isa);
        bench_gemm(2048, 2048, 2048, budget);
        bench_gemm(3200, 1024, 1024, budget);
        for (const Shape& s : shapes) bench_shape(s, budget);
        if (t == threads) break;
    }
    return fails ? 1 : 0;
}
