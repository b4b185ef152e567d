// Kernels of the Elman RNN in the row-vector convention of the reference notes:
//   s_t = f_s(x_t W_x + s_{t-1} W_h + b_h),   y_t = f_o(s_t W_y + b_y).
// Buffers are time-major and row-major, (T, B, .), so each step is one block of B rows.
// A leading dimension `ld` lets a direction write its H columns into a (T, B, D*H) buffer.
// Backward functions add into parameter gradients; zeroing them is the caller's job.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "gemm.hpp"

namespace rnnext {

static_assert(std::is_same<Index, Eigen::Index>::value, "one index type");

enum class Act { tanh, relu, sigmoid };
enum class OutAct { none, sigmoid, softmax };

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMatMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CRowVec = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <class T>
using RowVec = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;

template <class T>
inline MatMap<T> mat(T* p, Index rows, Index cols, Index ld) {
    return MatMap<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class T>
inline CMatMap<T> cmat(const T* p, Index rows, Index cols, Index ld) {
    return CMatMap<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}

// out (cols) += the sum of the rows of A (rows, cols); big ones split by columns.
template <class T>
inline void column_sums(T* out, const T* A, Index rows, Index cols, Index ld) {
    const Index units = (cols + 15) / 16;
    const int parts = double(rows) * double(cols) >= double(1 << 20)
                          ? static_cast<int>(std::min<Index>(get_num_threads(), units))
                          : 1;
    parallel_run(parts, [&](int i) {
        const Index c0 = units * i / parts * 16, c1 = std::min(cols, units * (i + 1) / parts * 16);
        if (c0 >= c1) return;
        auto o = RowVec<T>(out + c0, c1 - c0);
        for (Index r = 0; r < rows; ++r) o += CRowVec<T>(A + r * ld + c0, c1 - c0);
    });
}

// Is step t inside sequence b? Without lengths every step is.
inline bool active(const int32_t* lengths, Index b, Index t) {
    return lengths == nullptr || t < lengths[b];
}

template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Calls f(offset, n) on the contiguous runs of a (rows, cols) block with leading dimension
// ld: element-wise work on 1-D runs is vectorised; on a strided 2-D map Eigen is ~4x slower.
template <class F>
inline void for_runs(Index rows, Index cols, Index ld, F&& f) {
    if (ld == cols) return f(Index(0), rows * cols);
    for (Index r = 0; r < rows; ++r) f(r * ld, cols);
}

template <class T>
inline void activation_forward(ArrMap<T> z, Act act) {  // in place
    switch (act) {
        case Act::tanh: z = z.tanh(); break;
        case Act::relu: z = z.max(T(0)); break;
        case Act::sigmoid: z = z.logistic(); break;
    }
}

template <class T>
inline void activation_forward(T* z, Index rows, Index cols, Index ld, Act act) {
    for_runs(rows, cols, ld, [&](Index o, Index n) { activation_forward(ArrMap<T>(z + o, n), act); });
}

// g *= f'(z) written through the output s = f(z): tanh' = 1 - s^2, sigmoid' = s (1 - s).
template <class T>
inline void activation_backward(ArrMap<T> g, CArrMap<T> s, Act act) {
    switch (act) {
        case Act::tanh: g *= T(1) - s.square(); break;
        case Act::relu: g *= (s > T(0)).template cast<T>(); break;
        case Act::sigmoid: g *= s * (T(1) - s); break;
    }
}

// Rows [lo, hi) of n items for part i of parts.
inline void split_range(Index n, int parts, int i, Index& lo, Index& hi) {
    lo = n * i / parts;
    hi = n * (i + 1) / parts;
}

// How a recurrence is shared by threads. By rows: each thread owns rows of the batch for
// all steps (a row needs only its own previous state: no barrier per step). By columns:
// each thread owns columns of W_h and of the states, and the threads meet at a barrier
// every step; chosen when W_h is too big for a core's cache (every thread would stream
// all of it every step) or the batch is too small to share.
struct RecurrencePlan {
    int parts = 1;
    bool by_columns = false;
    Index units = 1, unit = 1;  // column ranges are whole packed panels
};

template <class T>
inline RecurrencePlan plan_recurrence(Index B, Index H, Index Tn) {
    RecurrencePlan p;
    const int threads = get_num_threads();
    const double step_fma = double(B) * double(H) * double(H);
    if (threads <= 1 || step_fma * double(Tn) < 4 * kParallelMinFma) return p;
    const bool big_wh = double(H) * double(H) * sizeof(T) > double(1 << 20);
    p.unit = gemm_fns<T>().nr;
    p.units = (H + p.unit - 1) / p.unit;
    if ((big_wh || B < 2) && step_fma >= threads * double(1 << 18) && p.units >= 2) {
        p.by_columns = true;
        p.parts = static_cast<int>(std::min<Index>(threads, p.units));
    } else if (B >= 2) {
        p.parts = static_cast<int>(std::min<Index>(threads, B));
    }
    return p;
}

inline void column_range(const RecurrencePlan& p, Index H, int i, Index& c0, Index& c1) {
    c0 = std::min(H, p.units * i / p.parts * p.unit);
    c1 = std::min(H, p.units * (i + 1) / p.parts * p.unit);
}

// Rows [b0, b1) of the recurrence s_t = f(s_t + s_{t-1} W_h) over all steps; S already
// holds x_t W_x + b_h, Whp is W_h packed by pack_b.
template <class T>
void rnn_rows_forward(T* S, T* carry, const T* Whp, const int32_t* lengths, Index Tn, Index B, Index b0, Index b1,
                      Index H, Index ldS, bool reverse, Act act) {
    const Index nb = b1 - b0;
    const T* prev = carry + b0 * H;  // state entering the step
    Index ld_prev = H;
    for (Index step = 0; step < Tn; ++step) {
        const Index t = reverse ? Tn - 1 - step : step;
        T* St = S + (t * B + b0) * ldS;
        gemm_serial<T>({nb, H, H, prev, ld_prev, false, nullptr, 0, false, Whp, St, ldS, true});
        activation_forward(St, nb, H, ldS, act);
        if (lengths) {
            for (Index b = b0; b < b1; ++b) {
                T* row = St + (b - b0) * ldS;
                if (active(lengths, b, t))
                    std::memcpy(carry + b * H, row, sizeof(T) * H);
                else
                    std::fill(row, row + H, T(0));
            }
        } else {
            prev = St;
            ld_prev = ldS;
        }
    }
    if (!lengths) mat(carry + b0 * H, nb, H, H) = cmat(prev, nb, H, ld_prev);
}

// Columns [c0, c1) of the recurrence for all rows, one of a team meeting at `bar` every
// step. With lengths the carried states alternate between carry and next, so that no
// thread overwrites a state another one is still reading.
template <class T>
void rnn_cols_forward(T* S, T* carry, T* next, const T* Whp, const int32_t* lengths, Index Tn, Index B, Index c0,
                      Index c1, Index H, Index ldS, bool reverse, Act act, SpinBarrier& bar) {
    const Index nc = c1 - c0;
    const T* prev = carry;
    Index ld_prev = H;
    T *cur = carry, *nxt = next;
    for (Index step = 0; step < Tn; ++step) {
        const Index t = reverse ? Tn - 1 - step : step;
        T* St = S + t * B * ldS;
        if (nc > 0) {
            gemm_serial<T>({B, nc, H, prev, ld_prev, false, nullptr, 0, false, Whp + c0 * H, St + c0, ldS, true});
            activation_forward(St + c0, B, nc, ldS, act);
        }
        if (lengths) {
            for (Index b = 0; b < B; ++b) {
                T* row = St + b * ldS + c0;
                if (active(lengths, b, t)) {
                    std::memcpy(nxt + b * H + c0, row, sizeof(T) * nc);
                } else {
                    std::memcpy(nxt + b * H + c0, cur + b * H + c0, sizeof(T) * nc);
                    std::fill(row, row + nc, T(0));
                }
            }
            std::swap(cur, nxt);
            prev = cur;
        } else {
            prev = St;
            ld_prev = ldS;
        }
        bar.wait();
    }
    if (prev != carry) mat(carry + c0, B, nc, H) = cmat(prev + c0, B, nc, ld_prev);
}

// One direction of one layer over all steps. The input projection of every step is one
// GEMM before the loop, so the loop holds only s_{t-1} W_h (W_h packed once) and the
// activation. Steps at or past lengths[b] leave row b of the carried state alone and
// store zeros.
template <class T>
void rnn_layer_forward(T* S,                   // (T, B, ldS) out: states s_t in columns [0, H)
                       T* carry,               // (B, H) in: h0, out: h_n
                       T* tmp,                 // (B, H) workspace
                       T* Whp,                 // (packed_size(H, H)) workspace
                       const T* X,             // (T, B, I) layer input
                       const T* W_x,           // (I, H)
                       const T* W_h,           // (H, H)
                       const T* b_h,           // (H)
                       const int32_t* lengths, // (B) or nullptr
                       Index Tn, Index B, Index I, Index H, Index ldS, bool reverse, Act act) {
    if (Tn == 0 || B == 0) return;
    gemm<T>({Tn * B, H, I, X, I, false, W_x, H, false, nullptr, S, ldS, false, b_h});
    pack_b<T>(Whp, W_h, H, false, H, H);
    RecurrencePlan plan = plan_recurrence<T>(B, H, Tn);
    if (plan.by_columns) {
        SpinBarrier bar(plan.parts);
        if (parallel_team(plan.parts, [&](int i) {
                Index c0, c1;
                column_range(plan, H, i, c0, c1);
                rnn_cols_forward(S, carry, tmp, Whp, lengths, Tn, B, c0, c1, H, ldS, reverse, act, bar);
            }))
            return;
        plan.parts = 1;  // the pool is busy: one thread
    }
    parallel_run(plan.parts, [&](int i) {
        Index b0, b1;
        split_range(B, plan.parts, i, b0, b1);
        rnn_rows_forward(S, carry, Whp, lengths, Tn, B, b0, b1, H, ldS, reverse, act);
    });
}

// Rows [b0, b1) of the backward recurrence over the steps [t0, t1) in processing order
// (t1 - 1 down to t0, or up for the reverse direction). G holds dL/ds_t of those steps,
// step t at row block t - t0, and becomes dL/d(pre-activation) in place; dcarry goes from
// dL/ds entering the chunk to dL/ds leaving it (dL/dh0 after the last chunk); sumsq[t]
// gets |dL/ds_t|^2 over these rows.
template <class T>
void rnn_rows_backward(T* G, T* dcarry, T* tmp, T* sumsq, const T* S, const T* WhTp, const int32_t* lengths,
                       Index t0, Index t1, Index B, Index b0, Index b1, Index H, Index ldS, bool reverse, Act act) {
    const Index nb = b1 - b0;
    T* dc = dcarry + b0 * H;
    for (Index k = 0; k < t1 - t0; ++k) {
        const Index t = reverse ? t0 + k : t1 - 1 - k;
        T* Gp = G + ((t - t0) * B + b0) * H;
        const T* St = S + (t * B + b0) * ldS;
        T ss = 0;
        for (Index r = 0; r < nb; ++r) {  // G = (dS_t + dc) * f'(s_t), row by row
            ArrMap<T> g(Gp + r * H, H);
            if (!active(lengths, b0 + r, t)) {
                g.setZero();
                continue;
            }
            g += CArrMap<T>(dc + r * H, H);
            if (sumsq) ss += g.square().sum();
            activation_backward(g, CArrMap<T>(St + r * ldS, H), act);
        }
        if (sumsq) sumsq[t] = ss;
        if (lengths) {  // past its end a sequence passes dL/dh through unchanged
            gemm_serial<T>({nb, H, H, Gp, H, false, nullptr, 0, false, WhTp, tmp + b0 * H, H, false});
            for (Index b = b0; b < b1; ++b)
                if (active(lengths, b, t)) std::memcpy(dcarry + b * H, tmp + b * H, sizeof(T) * H);
        } else {  // G already holds dc, so the product can overwrite it
            gemm_serial<T>({nb, H, H, Gp, H, false, nullptr, 0, false, WhTp, dc, H, false});
        }
    }
}

// Columns [c0, c1) of the backward recurrence over the steps [t0, t1) for all rows, one of
// a team meeting at `bar` every step once G_t = dL/d(pre-activation) is complete in every
// column.
template <class T>
void rnn_cols_backward(T* G, T* dcarry, T* tmp, T* sumsq, const T* S, const T* WhTp, const int32_t* lengths,
                       Index t0, Index t1, Index B, Index c0, Index c1, Index H, Index ldS, bool reverse, Act act,
                       SpinBarrier& bar) {
    const Index nc = c1 - c0;
    for (Index k = 0; k < t1 - t0; ++k) {
        const Index t = reverse ? t0 + k : t1 - 1 - k;
        T* Gt = G + (t - t0) * B * H;
        const T* St = S + t * B * ldS;
        T ss = 0;
        for (Index b = 0; b < B && nc > 0; ++b) {
            ArrMap<T> g(Gt + b * H + c0, nc);
            if (!active(lengths, b, t)) {
                g.setZero();
                continue;
            }
            g += CArrMap<T>(dcarry + b * H + c0, nc);
            if (sumsq) ss += g.square().sum();
            activation_backward(g, CArrMap<T>(St + b * ldS + c0, nc), act);
        }
        if (sumsq) sumsq[t] = ss;
        bar.wait();
        if (nc == 0) continue;
        if (lengths) {
            gemm_serial<T>({B, nc, H, Gt, H, false, nullptr, 0, false, WhTp + c0 * H, tmp + c0, H, false});
            for (Index b = 0; b < B; ++b)
                if (active(lengths, b, t)) std::memcpy(dcarry + b * H + c0, tmp + b * H + c0, sizeof(T) * nc);
        } else {
            gemm_serial<T>({B, nc, H, Gt, H, false, nullptr, 0, false, WhTp + c0 * H, dcarry + c0, H, false});
        }
    }
}

// Steps per chunk of the backward pass: enough rows (chunk * B) that the chunk's weight
// gradient products stay efficient and that there are few chunks (each is a round of
// thread hand-offs; a chunk under 2 MiB is not worth one), few enough that the chunk of
// dL/d(pre-activation) stays small (8 MiB); the chunks are of equal length. It depends on
// the shape only, so results do not depend on the thread count.
constexpr Index kChunkRows = 1024, kMaxChunks = 4;
constexpr double kChunkMinBytes = 2 << 20, kChunkMaxBytes = 8 << 20;

// Rows per chunk forced by the tests (0: the shape decides).
inline std::atomic<Index>& backward_chunk_rows_override() {
    static std::atomic<Index> rows{0};
    return rows;
}

template <class T>
inline Index backward_chunk_steps(Index Tn, Index B, Index H) {
    if (Tn <= 0 || B <= 0) return 1;
    const double row_bytes = double(H) * sizeof(T);
    Index steps;
    if (const Index forced = backward_chunk_rows_override().load(std::memory_order_relaxed)) {
        steps = (forced + B - 1) / B;
    } else {
        const Index rows = std::max({kChunkRows, (Tn * B + kMaxChunks - 1) / kMaxChunks,
                                     static_cast<Index>(std::min(kChunkMinBytes / row_bytes, double(Tn * B)))});
        const Index cap = static_cast<Index>(kChunkMaxBytes / (double(B) * row_bytes));
        steps = std::min((rows + B - 1) / B, std::max<Index>(cap, 1));
    }
    steps = std::max<Index>(1, std::min(steps, Tn));
    const Index chunks = (Tn + steps - 1) / steps;
    return (Tn + chunks - 1) / chunks;
}

// Backpropagation through time for rnn_layer_forward, chunk by chunk of steps in
// processing order (from the last step for the forward direction, the first for the
// reverse one), so that only a chunk of dL/d(pre-activation) exists at a time: for each
// chunk, fill(G, t0, t1) writes dL/ds_t of steps [t0, t1) into G (rows (t1 - t0) * B,
// H columns); the recurrence turns it into dL/d(pre-activation) in place; dW_x, dW_h and
// db_h get that chunk's products; drain(G, t0, t1) takes it on to the layer's input
// (dL/dX_t = G W_x^T). input(t0, t1) gives the layer input's rows of those steps.
template <class T, class Fill, class Input, class Drain>
void rnn_layer_backward(T* dW_x,                // (I, H) accumulated
                        T* dW_h,                // (H, H) accumulated
                        T* db_h,                // (H) accumulated
                        T* dcarry,              // (B, H) in: dL/dh_n, out: dL/dh0
                        T* G,                   // (chunk * B, H) workspace
                        Index chunk,            // steps per chunk
                        T* tmp,                 // (B, H) workspace
                        T* first,               // (B, H) workspace
                        T* WhTp,                // (packed_size(H, H)) workspace
                        T* sumsq,               // (slots, T) workspace
                        int slots,              // threads that may share the recurrence
                        T* norms,               // (T) out: |dL/ds_t| over the batch, or nullptr
                        const T* S,             // (T, B, ldS) states from the forward pass
                        const T* h0,            // (B, H), or nullptr for zeros
                        const T* W_h,           // (H, H)
                        const int32_t* lengths, // (B) or nullptr
                        Index Tn, Index B, Index I, Index H, Index ldS, bool reverse, Act act, Fill&& fill,
                        Input&& input, Drain&& drain) {
    if (Tn == 0 || B == 0) return;
    pack_b<T>(WhTp, W_h, H, true, H, H);  // W_h^T
    RecurrencePlan plan = plan_recurrence<T>(B, H, Tn);
    plan.parts = std::min(plan.parts, slots);
    if (norms) std::fill(sumsq, sumsq + slots * Tn, T(0));
    if (h0) std::fill(first, first + B * H, T(0));
    const Index chunks = (Tn + chunk - 1) / chunk;
    for (Index c = 0; c < chunks; ++c) {
        // Chunk c in processing order; the forward direction's first chunk ends at T.
        const Index k = reverse ? c : chunks - 1 - c;
        const Index t0 = k * chunk, t1 = std::min(Tn, t0 + chunk), rows = (t1 - t0) * B;
        fill(G, t0, t1);
        bool done = false;
        if (plan.by_columns) {
            SpinBarrier bar(plan.parts);
            done = parallel_team(plan.parts, [&](int i) {
                Index c0, c1;
                column_range(plan, H, i, c0, c1);
                rnn_cols_backward(G, dcarry, tmp, norms ? sumsq + i * Tn : nullptr, S, WhTp, lengths, t0, t1, B, c0,
                                  c1, H, ldS, reverse, act, bar);
            });
        }
        const int parts = plan.by_columns ? 1 : plan.parts;  // by columns but the pool is busy: one thread
        if (!done)
            parallel_run(parts, [&](int i) {
                Index b0, b1;
                split_range(B, parts, i, b0, b1);
                rnn_rows_backward(G, dcarry, tmp, norms ? sumsq + i * Tn : nullptr, S, WhTp, lengths, t0, t1, B, b0,
                                  b1, H, ldS, reverse, act);
            });
        gemm<T>({I, H, rows, input(t0, t1), I, true, G, H, false, nullptr, dW_x, H, true});
        column_sums(db_h, G, rows, H, H);
        // The state entering step t is the state of the step before it in processing order,
        // except at a sequence's first step, where it is h0 (stored states past the end are 0).
        const Index a = reverse ? t0 : std::max<Index>(t0, 1), b = reverse ? std::min(t1, Tn - 1) : t1;
        if (b > a) {
            const T* prev = S + (reverse ? a + 1 : a - 1) * B * ldS;
            gemm<T>({H, H, (b - a) * B, prev, ldS, true, G + (a - t0) * B * H, H, false, nullptr, dW_h, H, true});
        }
        if (h0)
            for (Index r = 0; r < B; ++r) {
                const Index len = lengths ? lengths[r] : Tn;
                const Index f = reverse ? len - 1 : 0;
                if (len > 0 && f >= t0 && f < t1) std::memcpy(first + r * H, G + ((f - t0) * B + r) * H, sizeof(T) * H);
            }
        drain(static_cast<const T*>(G), t0, t1);
    }
    if (norms)
        for (Index t = 0; t < Tn; ++t) {
            T total = 0;
            for (int i = 0; i < slots; ++i) total += sumsq[i * Tn + t];
            norms[t] = std::sqrt(total);
        }
    if (h0) gemm<T>({H, H, B, h0, H, true, first, H, false, nullptr, dW_h, H, true});
}

// One step for the rows of x and h with the weights as stored (streaming inference, where
// packing would cost as much as the step): s = f(x W_x + h W_h + b_h).
template <class T>
void rnn_cell_forward(T* s,        // (B, H) out, not aliasing h
                      const T* x,  // (B, I)
                      const T* h,  // (B, H)
                      const T* W_x, const T* W_h, const T* b_h, Index B, Index I, Index H, Act act) {
    gemm<T>({B, H, I, x, I, false, W_x, H, false, nullptr, s, H, false, b_h});
    gemm<T>({B, H, H, h, H, false, W_h, H, false, nullptr, s, H, true});
    activation_forward(s, B, H, H, act);
}

// Output layer: y = f_o(s W_y + b_y) over all N = T*B rows.
template <class T>
void output_forward(T* Y,        // (N, O) out
                    const T* S,  // (N, DH)
                    const T* W_y, const T* b_y, Index N, Index DH, Index O, OutAct act) {
    gemm<T>({N, O, DH, S, DH, false, W_y, O, false, nullptr, Y, O, false, b_y});
    if (act == OutAct::none) return;
    const int parts = N * O >= (1 << 17) ? get_num_threads() : 1;
    parallel_run(parts, [&](int i) {
        Index lo, hi;
        split_range(N, parts, i, lo, hi);
        auto Ym = mat(Y + lo * O, hi - lo, O, O);
        if (act == OutAct::sigmoid) {
            ArrMap<T> a(Y + lo * O, (hi - lo) * O);
            a = a.logistic();
        } else {
            for (Index n = 0; n < hi - lo; ++n) {
                auto r = Ym.row(n);
                r.array() = (r.array() - r.maxCoeff()).exp();
                r /= r.sum();
            }
        }
    });
}

// Softmax cross-entropy of N rows of C logits against class ids, in one pass per row:
// returns the loss summed over rows (accumulated in double) and writes dL/dz =
// softmax(z) - onehot(t). Returns false, leaving grad partly written, if an id is outside [0, C).
constexpr Index kRowBuf = 1024;

template <class T>
bool softmax_xent(double& loss,          // out
                  T* grad,               // (N, C) out
                  const T* z,            // (N, C)
                  const int64_t* targets,  // (N)
                  Index N, Index C) {
    const int parts = N * C >= (1 << 17) ? get_num_threads() : 1;
    double part_loss[64] = {};
    bool part_ok[64];
    const int P = std::min(parts, 64);
    parallel_run(P, [&](int i) {
        Index lo, hi;
        split_range(N, P, i, lo, hi);
        double total = 0;
        part_ok[i] = true;
        for (Index n = lo; n < hi; ++n) {
            const int64_t t = targets[n];
            if (t < 0 || t >= C) {
                part_ok[i] = false;
                return;
            }
            CArrMap<T> zr(z + n * C, C);
            ArrMap<T> g(grad + n * C, C);
            const T m = zr.maxCoeff();
            T sum;
            if (C <= kRowBuf) {
                // Through an aligned buffer padded to whole vectors, so that every element
                // takes Eigen's vectorised exp (an unaligned head or tail would take the
                // scalar one: slower, and results would depend on the arrays' addresses).
                alignas(64) T buf[kRowBuf];
                const Index padded = (C + 15) / 16 * 16;
                Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Aligned64> e(buf, padded);
                e.head(C) = zr - m;
                e.tail(padded - C).setConstant(-std::numeric_limits<T>::infinity());
                e = e.exp();  // the padding gives exp(-88) or less: nothing next to exp(0) = 1
                sum = e.head(C).sum();
                g = e.head(C) / sum;
            } else {
                g = (zr - m).exp();
                sum = g.sum();
                g /= sum;
            }
            total += double(std::log(sum) + m) - double(zr[t]);
            g[t] -= T(1);
        }
        part_loss[i] = total;
    });
    loss = 0;
    for (int i = 0; i < P; ++i) {
        if (!part_ok[i]) return false;
        loss += part_loss[i];
    }
    return true;
}

// dL/dz from dL/dy through f_o's Jacobian, in place; Y holds f_o's outputs.
template <class T>
void output_activation_backward(T* dZ,       // (N, O) in: dL/dy, out: dL/dz
                                const T* Y,  // (N, O)
                                Index N, Index O, OutAct act) {
    auto G = mat(dZ, N, O, O);
    const auto Ym = cmat(Y, N, O, O);
    switch (act) {
        case OutAct::none: break;
        case OutAct::sigmoid: G.array() *= Ym.array() * (T(1) - Ym.array()); break;
        case OutAct::softmax:
            for (Index n = 0; n < N; ++n) {
                const T dot = G.row(n).dot(Ym.row(n));
                G.row(n).array() = Ym.row(n).array() * (G.row(n).array() - dot);
            }
            break;
    }
}

template <class T>
void output_backward(T* dS,        // (N, DH) out (overwritten)
                     T* dW_y,      // (DH, O) accumulated
                     T* db_y,      // (O) accumulated
                     const T* dZ,  // (N, O) dL/dz
                     const T* S,   // (N, DH)
                     const T* W_y, Index N, Index DH, Index O) {
    gemm<T>({DH, O, N, S, DH, true, dZ, O, false, nullptr, dW_y, O, true});
    column_sums(db_y, dZ, N, O, O);
    gemm<T>({N, DH, O, dZ, O, false, W_y, O, true, nullptr, dS, DH, false});
}

}  // namespace rnnext
