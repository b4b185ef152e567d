// Times the engine with no Python in between: Model::forward and Model::backward on the
// shapes of bench_train.py, the packed GEMM against Eigen's, and counts heap allocations
// made by steady-state training steps (there should be none). Build and run:
//
//   cmake -S . -B build/bench -DRNNEXT_BENCH=ON -DCMAKE_BUILD_TYPE=Release \
//         -DPython_EXECUTABLE=$(which python) -Dpybind11_DIR=$(python -m pybind11 --cmakedir)
//   cmake --build build/bench --target bench_kernels && build/bench/bench_kernels [threads] [seconds]
//
// Compare its forward + backward time with bench_train.py's rnnext step to see what the
// binding, the loss and the SGD update in Python cost.
#include "model.hpp"

#include <malloc.h>

#include <algorithm>
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

static void bench_gemm(Index M, Index N, Index K, double budget) {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Mat A = Mat::Random(M, K), B = Mat::Random(K, N), C(M, N), C2(M, N);
    const Timing ours = time_it([&] { gemm<float>({M, N, K, A.data(), K, false, B.data(), N, false, nullptr,
                                                   C.data(), N, false}); },
                                budget / 2);
    const Timing eig = time_it([&] { C2.noalias() = A * B; }, budget / 2);
    const double f = 2.0 * M * N * K;
    std::printf("gemm %5ldx%5ldx%5ld  packed (%s, %d threads) %7.1f GFLOP/s   Eigen 3.4 (1 thread) %7.1f GFLOP/s   "
                "max |diff| %.2g\n",
                long(M), long(N), long(K), gemm_table().isa, get_num_threads(), f / ours.min / 1e9, f / eig.min / 1e9,
                double((C - C2).cwiseAbs().maxCoeff()));
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : available_cores();
    const double budget = argc > 2 ? std::atof(argv[2]) : 2.0;
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
    return 0;
}
