// Packed GEMM for one instruction set, compiled once per set the build supports; defines
// the table named by RNNEXT_GEMM_TABLE (gemm_table_base unless told otherwise).
//
// The scheme is GotoBLAS/BLIS's: B is packed into panels of NR columns (K rows of NR
// contiguous values), A into panels of at most MR rows (k-major), and a micro-kernel keeps
// an MR x NR tile of C in vector registers while it runs down K: per k it loads NR values of
// B and broadcasts MR values of A. Blocking: a KC-deep B panel (KC*NR values) stays in L1
// while it meets every A panel of an MC x KC block held in L2; KC and MC follow the running
// CPU's cache sizes (read once, at the first product).
//
// The vector operations are intrinsics for AVX-512 and AVX2+FMA (16 and 8 floats a
// register) and GCC/Clang vector extensions otherwise (SSE2, NEON: 4 floats). Tiles, all
// with two vectors of C per row: AVX-512 12 x 32 floats (24 of 32 registers hold C),
// AVX2 6 x 16 (12 of 16, as BLIS's and OpenBLAS's Haswell kernels), baseline 4 x 8. Every
// helper the micro-kernel calls is always_inline, so the accumulators stay in registers
// (checked with objdump: no stack access in the k loop).
//
// Everything here has internal linkage and the only header is plain types: no inline
// function compiled for one instruction set can be picked by the linker for another.
#include "gemm_types.hpp"

#if __has_include(<unistd.h>)
#include <unistd.h>  // sysconf
#endif

#include <cstdio>
#include <cstdlib>
#include <new>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#ifndef RNNEXT_GEMM_TABLE
#define RNNEXT_GEMM_TABLE gemm_table_base
#endif

#define RNNEXT_AI inline __attribute__((always_inline))

namespace rnnext {
namespace {

// Vec<T>: one register of T and the few operations the kernels need. load/store are
// unaligned (packed panels are aligned, C and unpacked B need not be).
template <class T>
struct Vec;

#if defined(__AVX512F__)
constexpr const char* kIsa = "avx512";
constexpr int kMR = 12;
constexpr bool kBigTile = true;  // see make_blocking
constexpr int kDirectRows = 24;  // see gemm
template <>
struct Vec<float> {
    using V = __m512;
    static constexpr int L = 16;
    static constexpr int AW = 1;
    static RNNEXT_AI V zero() { return _mm512_setzero_ps(); }
    static RNNEXT_AI V load(const float* p) { return _mm512_loadu_ps(p); }
    static RNNEXT_AI void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    static RNNEXT_AI V bcast(const float* p) { return _mm512_set1_ps(*p); }
    static RNNEXT_AI V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static RNNEXT_AI V add(V a, V b) { return _mm512_add_ps(a, b); }
    static RNNEXT_AI V mul(V a, V b) { return _mm512_mul_ps(a, b); }
};
template <>
struct Vec<double> {
    using V = __m512d;
    static constexpr int L = 8;
    static constexpr int AW = 1;
    static RNNEXT_AI V zero() { return _mm512_setzero_pd(); }
    static RNNEXT_AI V load(const double* p) { return _mm512_loadu_pd(p); }
    static RNNEXT_AI void store(double* p, V v) { _mm512_storeu_pd(p, v); }
    static RNNEXT_AI V bcast(const double* p) { return _mm512_set1_pd(*p); }
    static RNNEXT_AI V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
    static RNNEXT_AI V add(V a, V b) { return _mm512_add_pd(a, b); }
    static RNNEXT_AI V mul(V a, V b) { return _mm512_mul_pd(a, b); }
};
#elif defined(__AVX2__) && defined(__FMA__)
constexpr const char* kIsa = "avx2";
constexpr int kMR = 6;
constexpr bool kBigTile = false;
constexpr int kDirectRows = 18;
template <>
struct Vec<float> {
    using V = __m256;
    static constexpr int L = 8;
    static constexpr int AW = 1;
    static RNNEXT_AI V zero() { return _mm256_setzero_ps(); }
    static RNNEXT_AI V load(const float* p) { return _mm256_loadu_ps(p); }
    static RNNEXT_AI void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static RNNEXT_AI V bcast(const float* p) { return _mm256_broadcast_ss(p); }
    static RNNEXT_AI V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static RNNEXT_AI V add(V a, V b) { return _mm256_add_ps(a, b); }
    static RNNEXT_AI V mul(V a, V b) { return _mm256_mul_ps(a, b); }
};
template <>
struct Vec<double> {
    using V = __m256d;
    static constexpr int L = 4;
    static constexpr int AW = 1;
    static RNNEXT_AI V zero() { return _mm256_setzero_pd(); }
    static RNNEXT_AI V load(const double* p) { return _mm256_loadu_pd(p); }
    static RNNEXT_AI void store(double* p, V v) { _mm256_storeu_pd(p, v); }
    static RNNEXT_AI V bcast(const double* p) { return _mm256_broadcast_sd(p); }
    static RNNEXT_AI V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
    static RNNEXT_AI V add(V a, V b) { return _mm256_add_pd(a, b); }
    static RNNEXT_AI V mul(V a, V b) { return _mm256_mul_pd(a, b); }
};
#else
constexpr const char* kIsa = "generic";
constexpr int kMR = 4;  // 6 rows (12 accumulators) spill: SSE multiplies need a copy
constexpr bool kBigTile = false;
constexpr int kDirectRows = 8;
// 16-byte vectors with their natural alignment (so the compiler keeps them in registers);
// memory goes through an alias-safe, element-aligned twin.
template <class T>
struct VecExt {
    typedef T V __attribute__((vector_size(16)));
    typedef T U __attribute__((vector_size(16), aligned(sizeof(T)), may_alias));
    static constexpr int L = 16 / int(sizeof(T));
    // Packed A holds each value L times: SSE has no broadcast from memory (a load and a
    // shuffle, and the shuffles compete with the multiplies), so the kernel loads vectors.
    static constexpr int AW = L;
    static RNNEXT_AI V zero() { return V{}; }
    static RNNEXT_AI V load(const T* p) { return *reinterpret_cast<const U*>(p); }
    static RNNEXT_AI void store(T* p, V v) { *reinterpret_cast<U*>(p) = v; }
    static RNNEXT_AI V bcast(const T* p) {
        V v;  // not V{} + *p: 0 + x is not x for x = -0, so that would cost an add
        for (int l = 0; l < L; ++l) v[l] = *p;
        return v;
    }
    static RNNEXT_AI V fma(V a, V b, V c) { return a * b + c; }  // fused where the CPU can
    static RNNEXT_AI V add(V a, V b) { return a + b; }
    static RNNEXT_AI V mul(V a, V b) { return a * b; }
};
template <>
struct Vec<float> : VecExt<float> {};
template <>
struct Vec<double> : VecExt<double> {};
#endif

template <class T>
struct Tr {
    static constexpr int L = Vec<T>::L;  // lanes
    static constexpr int AW = Vec<T>::AW;  // copies of each value of A in its packed panels
    static constexpr int NR = 2 * L;     // two vectors of C per row
    static constexpr int MR = kMR;
};

inline Index imin(Index a, Index b) { return a < b ? a : b; }
inline Index imax(Index a, Index b) { return a > b ? a : b; }

// ---- blocking sizes from the caches of the running CPU

// Size in bytes of the level-`level` data (or unified) cache of cpu0, from sysfs; 0 when
// unknown. sysconf comes second: under some hypervisors it reports the host's L3.
long sysfs_cache(int level) {
    for (int i = 0; i < 8; ++i) {
        char path[96];
        std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/", i);
        auto read = [&](const char* leaf, char* buf, int n) {
            char p[128];
            std::snprintf(p, sizeof p, "%s%s", path, leaf);
            std::FILE* f = std::fopen(p, "r");
            if (!f) return false;
            const bool ok = std::fgets(buf, n, f) != nullptr;
            std::fclose(f);
            return ok;
        };
        char lv[16], type[32], size[32];
        if (!read("level", lv, sizeof lv)) return 0;
        if (std::atoi(lv) != level || !read("type", type, sizeof type) || type[0] == 'I') continue;
        if (!read("size", size, sizeof size)) return 0;
        char* end = nullptr;
        long v = std::strtol(size, &end, 10);
        if (end && (*end == 'K' || *end == 'k')) v *= 1024;
        else if (end && *end == 'M') v *= 1024 * 1024;
        return v > 0 ? v : 0;
    }
    return 0;
}

long cache_bytes(int level, long fallback, long lo, long hi) {
    long v = sysfs_cache(level);
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
    if (v <= 0) v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : _SC_LEVEL2_CACHE_SIZE);
#endif
    if (v <= 0) v = fallback;
    return v < lo ? lo : v > hi ? hi : v;
}

// KC: the B micro-panel (KC x NR) in about half of L1, the other half for the A panels
// and C streaming through (BLIS's Haswell/Zen choice: KC 256 for 6 x 16 on 32 KB). MC: the
// packed A block (MC x KC) in about half of L2. NC: a packed B block of at most 4 MB.
// AVX-512's 12 x 32 tile does 24 FMAs per row of B and pays more per K block for its 24
// lines of C, so it takes all of L1 for B and a quarter of L2 for A (measured on a Zen 5,
// 2048^3: KC 384 / MC 168 ran 8-10 % faster than 192 / 672). Zen 3 (32 KB, 512 KB):
// KC 256, MC 252 floats with AVX2; Zen 5 (48 KB, 1 MB): 384 / 336 with AVX2, 384 / 168 with
// AVX-512, 768 / 40 with SSE (whose packed A is 4x wider).
template <class T>
GemmBlocking make_blocking() {
    constexpr Index NR = Tr<T>::NR, MR = Tr<T>::MR;
    const long l1 = cache_bytes(1, 32 << 10, 16 << 10, 1 << 20);
    const long l2 = cache_bytes(2, 512 << 10, 128 << 10, 64 << 20);
    GemmBlocking b;
    const long l1_for_b = kBigTile ? l1 : l1 / 2, l2_for_a = kBigTile ? l2 / 4 : l2 / 2;
    b.kc = imax(64, imin(1024, l1_for_b / Index(NR * sizeof(T))) / 8 * 8);
    b.mc = imax(MR, imin(2048, l2_for_a / Index(b.kc * sizeof(T) * Tr<T>::AW)) / MR * MR);
    b.nc = imax(NR, imin(8192, (Index(4) << 20) / Index(b.kc * sizeof(T))) / NR * NR);
    return b;
}

template <class T>
const GemmBlocking& blocking() {
    static const GemmBlocking b = make_blocking<T>();
    return b;
}

template <class T>
GemmBlocking blocking_copy() {
    return blocking<T>();
}

// ---- micro-kernels

// The first nr columns of a tile (mr rows of NR values in tmp) into C; out of line, as
// partial tiles are rare.
template <class T>
__attribute__((noinline)) void store_edge(T* c, Index ldc, const T* tmp, int mr, Index nr, bool acc,
                                          const T* bias) {
    constexpr int NR = Tr<T>::NR;
    for (int i = 0; i < mr; ++i) {
        T* ci = c + i * ldc;
        const T* ti = tmp + i * NR;
        if (acc)
            for (Index j = 0; j < nr; ++j) ci[j] += ti[j];
        else if (bias)
            for (Index j = 0; j < nr; ++j) ci[j] = ti[j] + bias[j];
        else
            for (Index j = 0; j < nr; ++j) ci[j] = ti[j];
    }
}

// c (MR_, nr) = tile + (acc ? c : bias row, if any); full tiles go straight to C, edge tiles
// through a buffer.
template <class T, int MR_>
RNNEXT_AI void store_tile(T* c, Index ldc, Index nr, bool acc, const T* bias, typename Vec<T>::V (&c0)[MR_],
                          typename Vec<T>::V (&c1)[MR_]) {
    using O = Vec<T>;
    constexpr int L = O::L, NR = Tr<T>::NR;
    if (nr == NR) {
        if (acc) {
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i) {
                T* ci = c + i * ldc;
                O::store(ci, O::add(c0[i], O::load(ci)));
                O::store(ci + L, O::add(c1[i], O::load(ci + L)));
            }
        } else if (bias) {
            const typename O::V bias0 = O::load(bias), bias1 = O::load(bias + L);
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i) {
                T* ci = c + i * ldc;
                O::store(ci, O::add(c0[i], bias0));
                O::store(ci + L, O::add(c1[i], bias1));
            }
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i) {
                O::store(c + i * ldc, c0[i]);
                O::store(c + i * ldc + L, c1[i]);
            }
        }
        return;
    }
    alignas(64) T tmp[MR_ * NR];
#pragma GCC unroll 16
    for (int i = 0; i < MR_; ++i) {
        O::store(tmp + i * NR, c0[i]);
        O::store(tmp + i * NR + L, c1[i]);
    }
    store_edge<T>(c, ldc, tmp, MR_, nr, acc, bias);
}

// C tile (MR_, nr) [+]= A panel (MR_ x kc, k-major) * B panel (kc x NR, row stride ldb).
// With few rows the FMA latency, not the throughput, would bound the loop, so U
// consecutive k go to U separate sets of accumulators that are summed at the end.
template <class T, int MR_>
void kernel(Index kc, const T* __restrict a, const T* __restrict b, Index ldb, T* c, Index ldc, Index nr,
            bool acc, const T* bias) {
    using O = Vec<T>;
    using V = typename O::V;
    constexpr int L = O::L;
    constexpr int U = MR_ == 1 ? 4 : MR_ == 2 ? 2 : 1;
    V c0[U][MR_], c1[U][MR_];
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u)
#pragma GCC unroll 16
        for (int i = 0; i < MR_; ++i) c0[u][i] = c1[u][i] = O::zero();
#pragma GCC unroll 16
    for (int i = 0; i < MR_; ++i) {
        // The C tile is read or written after the loop: fetch it while the loop runs, or
        // its cache misses (C is often far bigger than the caches) stall the store.
        __builtin_prefetch(c + i * ldc, 1);
        __builtin_prefetch(c + i * ldc + Tr<T>::NR - 1, 1);
    }
    Index k = 0;
#if !defined(__AVX2__)
#pragma GCC unroll 4  // measured: +2-5 % with SSE (fewer loop instructions); AVX: neutral, and spills
#endif
    for (; k + U <= kc; k += U) {
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) {
            const V b0 = O::load(b), b1 = O::load(b + L);
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i) {
                const V ai = O::AW == 1 ? O::bcast(a + i) : O::load(a + i * O::AW);
                c0[u][i] = O::fma(ai, b0, c0[u][i]);
                c1[u][i] = O::fma(ai, b1, c1[u][i]);
            }
            a += MR_ * O::AW;
            b += ldb;
        }
    }
    if constexpr (U > 1) {
        for (; k < kc; ++k) {
            const V b0 = O::load(b), b1 = O::load(b + L);
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i) {
                const V ai = O::AW == 1 ? O::bcast(a + i) : O::load(a + i * O::AW);
                c0[0][i] = O::fma(ai, b0, c0[0][i]);
                c1[0][i] = O::fma(ai, b1, c1[0][i]);
            }
            a += MR_ * O::AW;
            b += ldb;
        }
#pragma GCC unroll 16
        for (int i = 0; i < MR_; ++i) {
#pragma GCC unroll 4
            for (int u = 1; u < U; ++u) {
                c0[0][i] = O::add(c0[0][i], c0[u][i]);
                c1[0][i] = O::add(c1[0][i], c1[u][i]);
            }
        }
    }
    store_tile<T, MR_>(c, ldc, nr, acc, bias, c0[0], c1[0]);
}

template <class T>
using KernelFn = void (*)(Index, const T*, const T*, Index, T*, Index, Index, bool, const T*);

template <class T, int MR_>
constexpr KernelFn<T> kernel_of() {
    if constexpr (MR_ > Tr<T>::MR) return nullptr;
    else return &kernel<T, MR_>;
}

// The kernel for panels of mr rows, 1 <= mr <= MR.
template <class T>
KernelFn<T> kernel_for(int mr) {
    static_assert(Tr<T>::MR <= 12, "the table below stops at 12 rows");
    static constexpr KernelFn<T> table[13] = {
        nullptr,           kernel_of<T, 1>(), kernel_of<T, 2>(), kernel_of<T, 3>(),  kernel_of<T, 4>(),
        kernel_of<T, 5>(), kernel_of<T, 6>(), kernel_of<T, 7>(), kernel_of<T, 8>(),  kernel_of<T, 9>(),
        kernel_of<T, 10>(), kernel_of<T, 11>(), kernel_of<T, 12>()};
    return table[mr];
}

// ---- packing

// One panel of MR_ rows of A (rows at A + i*lda, or columns when trans) over kc, k-major.
template <class T, int MR_>
void pack_a_panel(T* __restrict d, const T* __restrict A, Index lda, bool trans, Index kc) {
    constexpr int AW = Tr<T>::AW;
    if (!trans) {
        const T* rows[MR_];
#pragma GCC unroll 16
        for (int i = 0; i < MR_; ++i) rows[i] = A + i * lda;
        for (Index k = 0; k < kc; ++k)
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i)
#pragma GCC unroll 8
                for (int w = 0; w < AW; ++w) d[(k * MR_ + i) * AW + w] = rows[i][k];
    } else {
        for (Index k = 0; k < kc; ++k)
#pragma GCC unroll 16
            for (int i = 0; i < MR_; ++i)
#pragma GCC unroll 8
                for (int w = 0; w < AW; ++w) d[(k * MR_ + i) * AW + w] = A[k * lda + i];
    }
}

template <class T>
using PackAFn = void (*)(T*, const T*, Index, bool, Index);

template <class T, int MR_>
constexpr PackAFn<T> pack_a_of() {
    if constexpr (MR_ > Tr<T>::MR) return nullptr;
    else return &pack_a_panel<T, MR_>;
}

// Rows [i0, i0+mc) x depth [k0, k0+kc) of A into panels of balanced height (at most MR):
// panel p holds rows [r0, r1) with r0 = mc*p/np, stored k-major at dst + r0*kc*AW.
template <class T>
void pack_a(T* dst, const T* A, Index lda, bool trans, Index i0, Index mc, Index k0, Index kc) {
    static constexpr PackAFn<T> table[13] = {
        nullptr,           pack_a_of<T, 1>(), pack_a_of<T, 2>(), pack_a_of<T, 3>(),  pack_a_of<T, 4>(),
        pack_a_of<T, 5>(), pack_a_of<T, 6>(), pack_a_of<T, 7>(), pack_a_of<T, 8>(),  pack_a_of<T, 9>(),
        pack_a_of<T, 10>(), pack_a_of<T, 11>(), pack_a_of<T, 12>()};
    const Index np = (mc + Tr<T>::MR - 1) / Tr<T>::MR;
    for (Index p = 0; p < np; ++p) {
        const Index r0 = mc * p / np, mr = mc * (p + 1) / np - r0;
        const T* src = trans ? A + k0 * lda + i0 + r0 : A + (i0 + r0) * lda + k0;
        table[mr](dst + r0 * kc * Tr<T>::AW, src, lda, trans, kc);
    }
}

// Depth [k0, k0+kc) x columns [n0, n0+nc) of B into panels of NR columns, panel j at
// dst + j*ps, row k of it at + k*NR; columns past nc are zero.
template <class T>
void pack_b_block(T* dst, const T* B, Index ldb, bool trans, Index k0, Index kc, Index n0, Index nc, Index ps) {
    constexpr int NR = Tr<T>::NR;
    for (Index j = 0; j < nc; j += NR) {
        T* d = dst + (j / NR) * ps;
        const Index w = imin(NR, nc - j);
        if (!trans) {
            for (Index k = 0; k < kc; ++k) {
                const T* src = B + (k0 + k) * ldb + n0 + j;
                T* dk = d + k * NR;
                if (w == NR) {
                    __builtin_memcpy(dk, src, sizeof(T) * NR);
                } else {
                    for (Index jj = 0; jj < w; ++jj) dk[jj] = src[jj];
                    for (Index jj = w; jj < NR; ++jj) dk[jj] = T(0);
                }
            }
        } else {  // a transpose, in blocks of 64 k so that the lines written stay in L1
            for (Index kb = 0; kb < kc; kb += 64) {
                const Index ke = imin(kc, kb + 64);
                for (Index jj = 0; jj < w; ++jj) {
                    const T* src = B + (n0 + j + jj) * ldb + k0;
                    for (Index k = kb; k < ke; ++k) d[k * NR + jj] = src[k];
                }
                for (Index jj = w; jj < NR; ++jj)
                    for (Index k = kb; k < ke; ++k) d[k * NR + jj] = T(0);
            }
        }
    }
}

template <class T>
void pack_b(T* dst, const T* B, Index ldb, bool trans, Index K, Index N) {
    pack_b_block<T>(dst, B, ldb, trans, 0, K, 0, N, K * Tr<T>::NR);
}

// ---- the blocked product

// Per-thread packing buffers sized by the blocking, allocated at a thread's first product.
template <class T>
struct Workspace {
    T *a, *b, *edge;
    Workspace() {
        const GemmBlocking& s = blocking<T>();
        const Index n = s.mc * s.kc * Tr<T>::AW + s.kc * s.nc + s.kc * Tr<T>::NR;
        a = static_cast<T*>(std::aligned_alloc(64, (sizeof(T) * n + 63) / 64 * 64));
        if (!a) throw std::bad_alloc();
        b = a + s.mc * s.kc * Tr<T>::AW;
        edge = b + s.kc * s.nc;
    }
    ~Workspace() { std::free(a); }
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
};

template <class T>
Workspace<T>& workspace() {
    static thread_local Workspace<T> ws;
    return ws;
}

// One row of A times B as stored (K, N): c = [c +] sum_k a_k B_k [+ bias], B read row by
// row, four rows at a time, into C held in L1 (in column blocks of 2048 values). A
// matrix-vector product: B is read once and never reused, so it is not packed.
template <class T>
void gemv_row(const GemmArgs<T>& g) {
    using O = Vec<T>;
    using V = typename O::V;
    constexpr int L = O::L;
    constexpr Index NB = 2048;
    const Index N = g.N, K = g.K, sa = g.transA ? g.lda : 1;
    for (Index j0 = 0; j0 < N; j0 += NB) {
        const Index nb = imin(NB, N - j0), nv = nb / L * L;
        T* c = g.C + j0;
        if (!g.accumulate)
            for (Index j = 0; j < nb; ++j) c[j] = g.bias ? g.bias[j0 + j] : T(0);
        Index k = 0;
        for (; k + 4 <= K; k += 4) {
            const T* b0 = g.B + k * g.ldb + j0;
            const T *b1 = b0 + g.ldb, *b2 = b1 + g.ldb, *b3 = b2 + g.ldb;
            const T a0 = g.A[k * sa], a1 = g.A[(k + 1) * sa], a2 = g.A[(k + 2) * sa], a3 = g.A[(k + 3) * sa];
            const V v0 = O::bcast(&a0), v1 = O::bcast(&a1), v2 = O::bcast(&a2), v3 = O::bcast(&a3);
            Index j = 0;
            for (; j < nv; j += L) {  // two chains: with few columns their latency is the bound
                const V x = O::fma(v1, O::load(b1 + j), O::mul(v0, O::load(b0 + j)));
                const V y = O::fma(v3, O::load(b3 + j), O::mul(v2, O::load(b2 + j)));
                O::store(c + j, O::add(O::load(c + j), O::add(x, y)));
            }
            for (; j < nb; ++j) c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
        }
        for (; k < K; ++k) {
            const T* bk = g.B + k * g.ldb + j0;
            const T ak = g.A[k * sa];
            for (Index j = 0; j < nb; ++j) c[j] += ak * bk[j];
        }
    }
}

// One row of A against NV vectors of columns of B as stored, C in registers, one pass over
// K; with up to 4 vectors two sets of accumulators take alternate k (FMA latency).
template <class T, int NV>
void row_narrow(Index K, const T* a, Index sa, const T* b, Index ldb, T* c, bool acc, const T* bias) {
    using O = Vec<T>;
    using V = typename O::V;
    constexpr int L = O::L, U = NV <= 4 ? 2 : 1;
    V s[U][NV];
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u)
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) s[u][v] = O::zero();
    Index k = 0;
    for (; k + U <= K; k += U) {
#pragma GCC unroll 2
        for (int u = 0; u < U; ++u) {
            const V ak = O::bcast(a + (k + u) * sa);
            const T* bk = b + (k + u) * ldb;
#pragma GCC unroll 16
            for (int v = 0; v < NV; ++v) s[u][v] = O::fma(ak, O::load(bk + v * L), s[u][v]);
        }
    }
    if (k < K) {
        const V ak = O::bcast(a + k * sa);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) s[0][v] = O::fma(ak, O::load(b + k * ldb + v * L), s[0][v]);
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
        V r = U == 2 ? O::add(s[0][v], s[U - 1][v]) : s[0][v];
        if (acc) r = O::add(r, O::load(c + v * L));
        else if (bias) r = O::add(r, O::load(bias + v * L));
        O::store(c + v * L, r);
    }
}

template <class T, int NV>
constexpr void (*row_narrow_of())(Index, const T*, Index, const T*, Index, T*, bool, const T*) {
    return &row_narrow<T, NV>;
}

// One row of A times B as stored (K, N), B narrow or small: blocks of up to 8 vectors of
// columns in registers, one pass over K each; the last N % L columns one by one.
template <class T>
void row_product(const GemmArgs<T>& g) {
    constexpr int L = Vec<T>::L;
    static constexpr void (*table[9])(Index, const T*, Index, const T*, Index, T*, bool, const T*) = {
        nullptr,                row_narrow_of<T, 1>(), row_narrow_of<T, 2>(), row_narrow_of<T, 3>(),
        row_narrow_of<T, 4>(), row_narrow_of<T, 5>(), row_narrow_of<T, 6>(), row_narrow_of<T, 7>(),
        row_narrow_of<T, 8>()};
    const Index full = g.N / L * L, sa = g.transA ? g.lda : 1;
    for (Index j0 = 0; j0 < full; j0 += 8 * L)
        table[imin(8, (full - j0) / L)](g.K, g.A, sa, g.B + j0, g.ldb, g.C + j0, g.accumulate,
                                        g.bias ? g.bias + j0 : nullptr);
    for (Index j = full; j < g.N; ++j) {
        T sum = g.accumulate ? g.C[j] : g.bias ? g.bias[j] : T(0);
        for (Index k = 0; k < g.K; ++k) sum += g.A[k * sa] * g.B[k * g.ldb + j];
        g.C[j] = sum;
    }
}

template <class T>
void gemm(const GemmArgs<T>& g) {
    constexpr int NR = Tr<T>::NR, MR = Tr<T>::MR;
    const Index M = g.M, N = g.N, K = g.K;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!g.accumulate)
            for (Index i = 0; i < M; ++i)
                for (Index j = 0; j < N; ++j) g.C[i * g.ldc + j] = g.bias ? g.bias[j] : T(0);
        return;
    }
    const GemmBlocking& s = blocking<T>();
    // With few rows of A, packing B would cost as much as the product: read it in place,
    // in short K blocks (rows of B are often 4 KB apart: a deep panel would touch a page
    // per row, and meet every row again only after all other panels). kDirectRows:
    // measured on a Zen 5 (AVX2 16 x 1760 x 1760: 1.3x Eigen read in place, 0.8x packed).
    const bool direct = !g.Bp && !g.transB && M <= kDirectRows;
    // B 8 vectors wide or (with AVX; measured slower with SSE) in L1: C in registers; else
    // C in L1.
    if (direct && M == 1)
        return N <= 8 * Vec<T>::L || (Tr<T>::AW == 1 && K * N * Index(sizeof(T)) <= (32 << 10)) ? row_product<T>(g)
                                                                                              : gemv_row<T>(g);
    // 32: measured, 1.2-1.7x over KC at 1 x 1024 x 1024; short rows share pages anyway.
    const Index KC = direct && g.ldb * Index(sizeof(T)) >= 1024 ? imin(s.kc, 32) : s.kc, MC = s.mc, NC = s.nc;
    Workspace<T>& ws = workspace<T>();
    for (Index jc = 0; jc < N; jc += NC) {
        const Index nc = imin(NC, N - jc);
        for (Index pc = 0; pc < K; pc += KC) {
            const Index kc = imin(KC, K - pc);
            const bool acc = g.accumulate || pc > 0;
            const T* bblk;
            Index bps, bld;  // panel stride and row stride of the B panels
            if (g.Bp) {
                bblk = g.Bp + jc * K + pc * NR;
                bps = K * NR;
                bld = NR;
            } else if (direct) {
                bblk = g.B + pc * g.ldb + jc;
                bps = NR;
                bld = g.ldb;
            } else {
                pack_b_block<T>(ws.b, g.B, g.ldb, g.transB, pc, kc, jc, nc, kc * NR);
                bblk = ws.b;
                bps = kc * NR;
                bld = NR;
            }
            for (Index ic = 0; ic < M; ic += MC) {
                const Index mc = imin(MC, M - ic);
                // One row of A as stored is already its packed panel.
                const T* ap = g.A + pc;
                if (M > 1 || g.transA || Tr<T>::AW > 1) {
                    pack_a<T>(ws.a, g.A, g.lda, g.transA, ic, mc, pc, kc);
                    ap = ws.a;
                }
                const Index np = (mc + MR - 1) / MR;
                for (Index jr = 0; jr < nc; jr += NR) {
                    const Index nr = imin(NR, nc - jr);
                    const T* bp = bblk + (jr / NR) * bps;
                    Index ld = bld;
                    if (direct && nr < NR) {  // a partial panel read in place would overrun B
                        pack_b_block<T>(ws.edge, g.B, g.ldb, false, pc, kc, jc + jr, nr, kc * NR);
                        bp = ws.edge;
                        ld = NR;
                    }
                    for (Index p = 0; p < np; ++p) {
                        const Index r0 = mc * p / np, mr = mc * (p + 1) / np - r0;
                        kernel_for<T>(int(mr))(kc, ap + r0 * kc * Tr<T>::AW, bp, ld, g.C + (ic + r0) * g.ldc + jc + jr, g.ldc,
                                               nr, acc, g.bias ? g.bias + jc + jr : nullptr);
                    }
                }
            }
        }
    }
}

}  // namespace

extern const GemmTable RNNEXT_GEMM_TABLE;
const GemmTable RNNEXT_GEMM_TABLE = {
    kIsa,
    {Tr<float>::NR, &gemm<float>, &blocking_copy<float>, &pack_b<float>},
    {Tr<double>::NR, &gemm<double>, &blocking_copy<double>, &pack_b<double>},
};

}  // namespace rnnext
