// Packed GEMM for one instruction set, compiled once per set the build supports; defines
// the table named by RNNEXT_GEMM_TABLE (gemm_table_base unless told otherwise).
//
// The scheme is GotoBLAS/BLIS's: B is packed into panels of NR columns (K rows of NR
// contiguous values), A into panels of at most MR rows (k-major), and a micro-kernel keeps
// an MR x NR tile of C in vector registers while it runs down K: per k it loads NR values of
// B and broadcasts MR values of A. Blocking: a KC-deep B panel (KC*NR values) stays in L1
// while it meets every A panel of an MC x KC block held in L2.
//
// Vectors are GCC/Clang vector extensions, so the same source gives AVX-512, AVX2 or
// SSE/NEON code depending on the flags of this object. Everything here has internal
// linkage and the only header is plain types: no inline function compiled for one
// instruction set can be picked by the linker for another.
#include "gemm_types.hpp"

#include <cstdlib>
#include <new>

#ifndef RNNEXT_GEMM_TABLE
#define RNNEXT_GEMM_TABLE gemm_table_base
#endif

namespace rnnext {
namespace {

#if defined(__AVX512F__)
constexpr int kVB = 64;  // bytes per vector register
constexpr int kRegs = 32;
constexpr const char* kIsa = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kVB = 32;
constexpr int kRegs = 16;
constexpr const char* kIsa = "avx2";
#else
constexpr int kVB = 16;
constexpr int kRegs = 16;
constexpr const char* kIsa = "generic";
#endif

template <class T>
struct Tr {
    typedef T V __attribute__((vector_size(kVB), aligned(sizeof(T))));
    static constexpr int L = kVB / int(sizeof(T));  // lanes
    static constexpr int NR = 2 * L;                  // two vectors of C per row
    static constexpr int MR = kRegs == 32 ? 12 : 6;   // 2*MR accumulators + 2 of B + 1 of A
    // Measured on a Xeon (Sapphire Rapids class, 48 KB L1d, 2 MB L2) for 3200 x 1024 x
    // 1024 products: KC = 512, MC = 60 ran at 137-141 GFLOP/s per core in every
    // transposition, the former 256 / 240 at 121-136.
    static constexpr Index KC = 512;
    static constexpr Index MC = 60;
    static constexpr Index NC = 4096 / Index(sizeof(T));  // 4 KB of each B row: 1024 floats
};

inline Index imin(Index a, Index b) { return a < b ? a : b; }

template <class T>
inline typename Tr<T>::V load(const T* p) {
    typename Tr<T>::V v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
template <class T>
inline void store(T* p, typename Tr<T>::V v) {
    __builtin_memcpy(p, &v, sizeof v);
}

// c (mr, nr) = tile + (acc ? c : bias row, if any); full tiles go straight to C, edge tiles
// through a buffer.
template <class T, int MR_>
inline void store_tile(T* c, Index ldc, Index nr, bool acc, const T* bias, typename Tr<T>::V (&c0)[MR_],
                       typename Tr<T>::V (&c1)[MR_]) {
    constexpr int L = Tr<T>::L, NR = Tr<T>::NR;
    if (nr == NR) {
        typename Tr<T>::V bias0{}, bias1{};
        if (bias) {
            bias0 = load<T>(bias);
            bias1 = load<T>(bias + L);
        }
#pragma GCC unroll 16
        for (int i = 0; i < MR_; ++i) {
            T* ci = c + i * ldc;
            if (acc) {
                c0[i] += load<T>(ci);
                c1[i] += load<T>(ci + L);
            } else if (bias) {
                c0[i] += bias0;
                c1[i] += bias1;
            }
            store<T>(ci, c0[i]);
            store<T>(ci + L, c1[i]);
        }
        return;
    }
    alignas(64) T tmp[NR];
    for (int i = 0; i < MR_; ++i) {
        store<T>(tmp, c0[i]);
        store<T>(tmp + L, c1[i]);
        T* ci = c + i * ldc;
        for (Index j = 0; j < nr; ++j) ci[j] = acc ? ci[j] + tmp[j] : bias ? tmp[j] + bias[j] : tmp[j];
    }
}

// C tile (MR_, nr) [+]= A panel (MR_ x kc, k-major) * B panel (kc x NR, row stride ldb).
template <class T, int MR_>
void kernel(Index kc, const T* __restrict a, const T* __restrict b, Index ldb, T* c, Index ldc, Index nr,
            bool acc, const T* bias) {
    using V = typename Tr<T>::V;
    constexpr int L = Tr<T>::L;
    V c0[MR_], c1[MR_];
#pragma GCC unroll 16
    for (int i = 0; i < MR_; ++i) {
        c0[i] = c1[i] = V{};
        // The C tile is read or written after the loop: fetch it while the loop runs, or
        // its cache misses (C is often far bigger than the caches) stall the store.
        __builtin_prefetch(c + i * ldc, 1);
        __builtin_prefetch(c + i * ldc + Tr<T>::NR - 1, 1);
    }
    for (Index k = 0; k < kc; ++k) {
        // 8 steps ahead (measured: +1-3 % on 3200 x 1024 x 1024 products)
        __builtin_prefetch(b + 8 * ldb);
        __builtin_prefetch(a + 8 * MR_);
        const V b0 = load<T>(b), b1 = load<T>(b + L);
#pragma GCC unroll 16
        for (int i = 0; i < MR_; ++i) {
            const T ai = a[i];  // scalar * vector broadcasts
            c0[i] += ai * b0;
            c1[i] += ai * b1;
        }
        a += MR_;
        b += ldb;
    }
    store_tile<T, MR_>(c, ldc, nr, acc, bias, c0, c1);
}

// One row: with two accumulators only, the FMA latency would bound the loop, so four
// consecutive k go to separate accumulators that are summed at the end.
template <class T>
void kernel_row(Index kc, const T* __restrict a, const T* __restrict b, Index ldb, T* c, Index ldc, Index nr,
                bool acc, const T* bias) {
    using V = typename Tr<T>::V;
    constexpr int L = Tr<T>::L;
    V s0[4] = {}, s1[4] = {};
    Index k = 0;
    for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
            const T* bk = b + (k + u) * ldb;
            const T ai = a[k + u];
            s0[u] += ai * load<T>(bk);
            s1[u] += ai * load<T>(bk + L);
        }
    }
    for (; k < kc; ++k) {
        const T ai = a[k];
        s0[0] += ai * load<T>(b + k * ldb);
        s1[0] += ai * load<T>(b + k * ldb + L);
    }
    V c0[1] = {(s0[0] + s0[1]) + (s0[2] + s0[3])};
    V c1[1] = {(s1[0] + s1[1]) + (s1[2] + s1[3])};
    store_tile<T, 1>(c, ldc, nr, acc, bias, c0, c1);
}

template <class T>
using KernelFn = void (*)(Index, const T*, const T*, Index, T*, Index, Index, bool, const T*);

template <class T, int MR_>
constexpr KernelFn<T> kernel_of() {
    if constexpr (MR_ > Tr<T>::MR) return nullptr;
    else if constexpr (MR_ == 1) return &kernel_row<T>;
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

// Rows [i0, i0+mc) x depth [k0, k0+kc) of A into panels of balanced height (at most MR):
// panel p holds rows [r0, r1) with r0 = mc*p/np, stored k-major at dst + r0*kc.
template <class T>
void pack_a(T* dst, const T* A, Index lda, bool trans, Index i0, Index mc, Index k0, Index kc) {
    const Index np = (mc + Tr<T>::MR - 1) / Tr<T>::MR;
    for (Index p = 0; p < np; ++p) {
        const Index r0 = mc * p / np, mr = mc * (p + 1) / np - r0;
        T* d = dst + r0 * kc;
        if (!trans) {
            for (Index i = 0; i < mr; ++i) {
                const T* src = A + (i0 + r0 + i) * lda + k0;
                for (Index k = 0; k < kc; ++k) d[k * mr + i] = src[k];
            }
        } else {
            for (Index k = 0; k < kc; ++k) {
                const T* src = A + (k0 + k) * lda + i0 + r0;
                for (Index i = 0; i < mr; ++i) d[k * mr + i] = src[i];
            }
        }
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

// Per-thread packing buffers of fixed size, allocated at a thread's first product.
template <class T>
struct Workspace {
    T *a, *b, *edge;
    Workspace() {
        const Index n = Tr<T>::MC * Tr<T>::KC + Tr<T>::KC * Tr<T>::NC + Tr<T>::KC * Tr<T>::NR;
        a = static_cast<T*>(std::aligned_alloc(64, sizeof(T) * n));
        if (!a) throw std::bad_alloc();
        b = a + Tr<T>::MC * Tr<T>::KC;
        edge = b + Tr<T>::KC * Tr<T>::NC;
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

template <class T>
void gemm(const GemmArgs<T>& g) {
    constexpr int NR = Tr<T>::NR, MR = Tr<T>::MR;
    constexpr Index KC = Tr<T>::KC, MC = Tr<T>::MC, NC = Tr<T>::NC;
    const Index M = g.M, N = g.N, K = g.K;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!g.accumulate)
            for (Index i = 0; i < M; ++i)
                for (Index j = 0; j < N; ++j) g.C[i * g.ldc + j] = g.bias ? g.bias[j] : T(0);
        return;
    }
    Workspace<T>& ws = workspace<T>();
    // With few rows of A, packing B would cost as much as the product: read it in place.
    const bool direct = !g.Bp && !g.transB && M <= 2 * MR;
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
                if (M > 1 || g.transA) {
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
                        kernel_for<T>(int(mr))(kc, ap + r0 * kc, bp, ld, g.C + (ic + r0) * g.ldc + jc + jr, g.ldc,
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
    {Tr<float>::NR, Tr<float>::KC, &gemm<float>, &pack_b<float>},
    {Tr<double>::NR, Tr<double>::KC, &gemm<double>, &pack_b<double>},
};

}  // namespace rnnext
