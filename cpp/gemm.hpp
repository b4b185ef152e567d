// Matrix products of the engine: C (M, N) = [C +] op(A) (M, K) op(B) (K, N), row-major.
// The serial work is done by packed micro-kernels compiled once per instruction set
// (cpp/gemm_isa.cpp); this header picks the set the CPU has and splits big products
// across the thread pool. B can be packed once and reused (W_h across all steps).
#pragma once

#include "gemm_types.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

namespace rnnext {

#if defined(RNNEXT_GEMM_MULTI_ISA)
extern const GemmTable gemm_table_v4;
extern const GemmTable gemm_table_v3;
#endif
extern const GemmTable gemm_table_base;

// The best set this CPU has; RNNEXT_GEMM_ISA=avx2 or =generic asks for a lesser one (to
// test those kernels on a bigger CPU).
inline const GemmTable& gemm_table() {
#if defined(RNNEXT_GEMM_MULTI_ISA)
    static const GemmTable* t = [] {
        __builtin_cpu_init();
        const char* want = std::getenv("RNNEXT_GEMM_ISA");
        const std::string w = want ? want : "";
#if defined(RNNEXT_GEMM_TOP_IS_NATIVE)
        const bool top = true;  // built for this host
#else
        const bool top = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
        if (w != "avx2" && w != "generic" && top) return &gemm_table_v4;
        if (w != "generic" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return &gemm_table_v3;
        return &gemm_table_base;
    }();
    return *t;
#else
    return gemm_table_base;
#endif
}

template <class T>
inline const GemmFns<T>& gemm_fns();
template <>
inline const GemmFns<float>& gemm_fns<float>() { return gemm_table().f32; }
template <>
inline const GemmFns<double>& gemm_fns<double>() { return gemm_table().f64; }

template <class T>
inline Index packed_size(Index K, Index N) {
    const Index nr = gemm_fns<T>().nr;
    return K * ((N + nr - 1) / nr) * nr;
}

template <class T>
inline void pack_b(T* dst, const T* B, Index ldb, bool trans, Index K, Index N) {
    const GemmFns<T>& f = gemm_fns<T>();
    const Index panels = (N + f.nr - 1) / f.nr;
    const int parts = double(K) * double(N) >= double(1 << 18) ? static_cast<int>(std::min<Index>(
                                                                     get_num_threads(), panels))
                                                               : 1;
    parallel_run(parts, [&](int i) {  // whole panels per thread: K * nr values each
        const Index lo = panels * i / parts * f.nr, hi = std::min(N, panels * (i + 1) / parts * f.nr);
        if (lo < hi) f.pack_b(dst + lo * K, trans ? B + lo * ldb : B + lo, ldb, trans, K, hi - lo);
    });
}

// One product on the calling thread.
template <class T>
inline void gemm_serial(const GemmArgs<T>& a) {
    gemm_fns<T>().gemm(a);
}

// Below this many multiply-adds (about 50 us of one core) a product stays on one thread:
// waking a sleeping worker can take tens of microseconds.
constexpr double kParallelMinFma = 1 << 22;

// One product, split into row (or column) ranges across the pool when it is big enough.
template <class T>
inline void gemm(const GemmArgs<T>& a) {
    const int threads = get_num_threads();
    const double fma = double(a.M) * double(a.N) * double(a.K);
    if (threads <= 1 || fma < kParallelMinFma) return gemm_serial(a);
    const Index nr = gemm_fns<T>().nr;
    const bool by_rows = a.M >= 16 * threads || a.M >= a.N;
    const Index extent = by_rows ? a.M : a.N, unit = by_rows ? 4 : nr;
    const Index units = (extent + unit - 1) / unit;
    const int parts = static_cast<int>(std::min<Index>(threads, units));
    if (parts <= 1) return gemm_serial(a);
    parallel_run(parts, [&](int i) {
        const Index lo = std::min(extent, units * i / parts * unit);
        const Index hi = std::min(extent, units * (i + 1) / parts * unit);
        if (lo >= hi) return;
        GemmArgs<T> s = a;
        if (by_rows) {
            s.M = hi - lo;
            s.A = a.transA ? a.A + lo : a.A + lo * a.lda;
            s.C = a.C + lo * a.ldc;
        } else {
            s.N = hi - lo;
            if (a.Bp)
                s.Bp = a.Bp + lo * a.K;  // panels are K * nr contiguous; lo is a multiple of nr
            else
                s.B = a.transB ? a.B + lo * a.ldb : a.B + lo;
            s.C = a.C + lo;
            if (a.bias) s.bias = a.bias + lo;
        }
        gemm_serial(s);
    });
}

}  // namespace rnnext
