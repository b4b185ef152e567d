// A (possibly stacked, bidirectional, token-input) Elman RNN with an optional output layer.
// All parameters live in one flat aligned buffer, gradients in a second one of the same
// layout; `layout` lists the tensors in it by kind ("W_x", ...), cells in layer-major,
// forward-then-reverse order: their full names belong to python/rnnext/interop.py.
// forward() keeps what backward() needs.
#pragma once

#include "kernels.hpp"

#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace rnnext {

struct Config {
    Index input_size = 0;   // features per step (the embedding width with a vocabulary)
    Index hidden_size = 0;
    Index output_size = 0;  // 0: no output layer, y is the top layer's states
    Index num_layers = 1;
    Index vocab_size = 0;   // > 0: inputs are token ids looked up in E (vocab_size, input_size)
    bool bidirectional = false;
    bool learn_h0 = false;
    double dropout = 0.0;   // between stacked layers, while training
    Act act = Act::tanh;
    OutAct out_act = OutAct::none;
};

struct TensorInfo {
    std::string name;
    std::size_t offset;
    std::vector<Index> shape;
};

template <class T>
struct AlignedFree {
    void operator()(T* p) const { std::free(p); }
};

// Workspaces are 64-byte aligned like the parameters (one cache line, one AVX-512
// register), so vectorised loops split every buffer the same way and equal inputs give
// bit-identical results in any model.
template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) {}
    T* allocate(std::size_t n) {
        void* p = std::aligned_alloc(64, ((std::max<std::size_t>(n, 1) * sizeof(T) + 63) / 64) * 64);
        if (!p) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t) { std::free(p); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const { return false; }
};
template <class T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

// Multiplies sizes, refusing results that do not fit in memory arithmetic.
inline Index checked_mul(Index a, Index b) {
    if (a < 0 || b < 0) throw std::invalid_argument("negative size");
    if (a != 0 && b > std::numeric_limits<Index>::max() / 8 / a)
        throw std::length_error("size overflows: " + std::to_string(a) + " * " + std::to_string(b));
    return a * b;
}

template <class T>
class Model {
public:
    explicit Model(const Config& c) : cfg(c) {
        if (c.input_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.output_size < 0 ||
            c.vocab_size < 0)
            throw std::invalid_argument("sizes must be positive");
        if (!(c.dropout >= 0.0 && c.dropout < 1.0)) throw std::invalid_argument("dropout must be in [0, 1)");
        const Index D = directions(), H = c.hidden_size;
        std::size_t off = 0;
        auto add = [&](const std::string& name, std::vector<Index> shape) {
            Index n = 1;
            for (Index s : shape) n = checked_mul(n, s);
            layout.push_back({name, off, shape});
            off += static_cast<std::size_t>(n);
            return layout.back().offset;
        };
        if (c.vocab_size > 0) E_ = add("E", {c.vocab_size, c.input_size});
        for (Index l = 0; l < c.num_layers; ++l) {
            for (Index d = 0; d < D; ++d) {
                Cell cell;
                cell.in = l == 0 ? c.input_size : D * H;
                cell.W_x = add("W_x", {cell.in, H});
                cell.W_h = add("W_h", {H, H});
                cell.b_h = add("b_h", {H});
                cells_.push_back(cell);
            }
        }
        if (c.learn_h0) h0_ = add("h0", {c.num_layers * D, H});
        if (c.output_size > 0) {
            W_y_ = add("W_y", {D * H, c.output_size});
            b_y_ = add("b_y", {c.output_size});
        }
        size_ = off;
        params_ = alloc(size_);
        grads_ = alloc(size_);
        rng_.seed(0);
    }

    Config cfg;
    std::vector<TensorInfo> layout;

    T* params() { return params_.get(); }
    T* grads() { return grads_.get(); }
    std::size_t size() const { return size_; }
    Index directions() const { return cfg.bidirectional ? 2 : 1; }
    Index states() const { return cfg.num_layers * directions(); }
    Index out_features() const { return cfg.output_size > 0 ? cfg.output_size : directions() * cfg.hidden_size; }
    bool has_forward() const { return have_forward_; }
    Index last_T() const { return T_; }
    Index last_B() const { return B_; }
    std::mutex& mutex() { return mutex_; }

    void zero_grad() { std::fill(grads_.get(), grads_.get() + size_, T(0)); }
    void seed(std::uint64_t s) { rng_.seed(s); }

    // y: (T, B, out_features); h_n: (states, B, H). Exactly one of x (T, B, I) and
    // ids (T, B) is given; h0 (states, B, H) and lengths (B) may be null. backward() needs
    // x: it is copied unless x_owner holds an owner that keeps x alive and unchanged until
    // the next forward() (a private or read-only array); x_private says that the owner
    // holds x for this model alone, so its bytes count as the model's. On return *x_owner
    // holds the owner this call replaced (the caller may have to release it under a lock).
    void forward(T* y, T* h_n, const T* x, const std::int64_t* ids, const T* h0, const std::int32_t* lengths,
                 Index Tn, Index B, bool training, std::shared_ptr<const void>* x_owner = nullptr,
                 bool x_private = false) {
        const Index H = cfg.hidden_size, D = directions(), I = cfg.input_size, L = cfg.num_layers;
        const Index N = checked_mul(Tn, B);
        checked_mul(N, std::max(I, D * H));
        have_forward_ = false;
        T_ = Tn;
        B_ = B;
        Scratch work;
        const std::size_t o_Whp = work.add(packed_size<T>(H, H)), o_tmp = work.add(B * H);
        const std::size_t o_emb = ids ? work.add(N * I) : 0;  // embedded ids, looked up again in backward
        dropped_ = training && cfg.dropout > 0.0 && L > 1;
        const std::size_t o_drop = dropped_ ? work.add(N * D * H) : 0;  // a layer's dropped input
        work.allocate();
        // Layer 0's input, kept for backward: the caller's array when its owner vouches for
        // it, else a copy; token ids are kept, their embeddings are not.
        std::shared_ptr<const void> none;
        x_owner_.swap(x_owner ? *x_owner : none);
        x_private_ = x && x_owner_ && x_private;
        if (x && x_owner_) {
            release(X0_);
            x0_ = x;
        } else if (x) {
            fit(X0_, N * I);
            if (N * I) std::memcpy(X0_.data(), x, sizeof(T) * N * I);
            x0_ = X0_.data();
        } else {
            release(X0_);
            x0_ = nullptr;
        }
        const T* emb = nullptr;
        if (ids) {
            fit(ids_, N);
            std::copy(ids, ids + N, ids_.begin());
            T* e = work.at(o_emb);
            const T* E = params_.get() + E_;
            for (Index n = 0; n < N; ++n) {
                if (ids[n] < 0 || ids[n] >= cfg.vocab_size)
                    throw std::invalid_argument("token id " + std::to_string(ids[n]) + " at flat position " +
                                                std::to_string(n) + " is outside [0, " +
                                                std::to_string(cfg.vocab_size) + ")");
                std::memcpy(e + n * I, E + ids[n] * I, sizeof(T) * I);
            }
            emb = e;
        } else {
            release(ids_);
        }
        if (lengths) {
            for (Index b = 0; b < B; ++b)
                if (lengths[b] < 0 || lengths[b] > Tn)
                    throw std::invalid_argument("lengths[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) +
                                                " is outside [0, " + std::to_string(Tn) + "]");
            fit(lengths_, B);
            std::copy(lengths, lengths + B, lengths_.begin());
        } else {
            release(lengths_);
        }
        const std::int32_t* len = lengths ? lengths_.data() : nullptr;
        // Initial states: given, learned (broadcast over the batch), or zeros (not stored).
        const Index SBH = states() * B * H;
        used_learned_h0_ = false;
        if (h0) {
            fit(H0_, SBH);
            if (SBH) std::memcpy(H0_.data(), h0, sizeof(T) * SBH);
        } else if (cfg.learn_h0) {
            used_learned_h0_ = true;
            fit(H0_, SBH);
            for (Index k = 0; k < states(); ++k)
                for (Index b = 0; b < B; ++b)
                    std::memcpy(H0_.data() + (k * B + b) * H, params_.get() + h0_ + k * H, sizeof(T) * H);
        } else {
            release(H0_);
        }
        if (H0_.empty())
            std::fill(h_n, h_n + SBH, T(0));
        else
            std::memcpy(h_n, H0_.data(), sizeof(T) * SBH);

        out_.resize(L);
        kept_.resize(L);
        for (Index l = 0; l < L; ++l) {
            const T* X = l == 0 && ids ? emb : layer_input(l);
            if (l > 0 && dropped_) {
                // Inverted dropout on the layer's input: keep with p = 1 - dropout, scale by
                // 1/p. Only the choices are kept (a byte each); backward drops again.
                std::uniform_real_distribution<double> u(0.0, 1.0);
                fit(kept_[l], N * D * H);
                for (Index i = 0; i < N * D * H; ++i) kept_[l][i] = !(u(rng_) < cfg.dropout);
                T* Xd = work.at(o_drop);
                drop(Xd, X, kept_[l].data(), N * D * H);
                X = Xd;
            } else {
                release(kept_[l]);
            }
            fit(out_[l], N * D * H);
            for (Index d = 0; d < D; ++d) {
                const Cell& c = cells_[l * D + d];
                const T* p = params_.get();
                rnn_layer_forward(out_[l].data() + d * H, h_n + (l * D + d) * B * H, work.at(o_tmp), work.at(o_Whp), X,
                                  p + c.W_x, p + c.W_h, p + c.b_h, len, Tn, B, c.in, H, D * H, d == 1, cfg.act);
            }
        }
        const T* top = out_[L - 1].data();
        if (cfg.output_size > 0) {
            // f_o's outputs are kept for its Jacobian in backward; without f_o, y is enough.
            const Index O = cfg.output_size;
            T* out = y;
            if (cfg.out_act != OutAct::none) {
                fit(Y_, N * O);
                out = Y_.data();
            } else {
                release(Y_);
            }
            output_forward(out, top, params_.get() + W_y_, params_.get() + b_y_, N, D * H, O, cfg.out_act);
            zero_padding(out, O, 0, Tn);
            if (out != y && N * O) std::memcpy(y, out, sizeof(T) * N * O);
        } else if (N) {
            release(Y_);
            std::memcpy(y, top, sizeof(T) * N * D * H);
        }
        scratch_bytes_ = work.bytes();
        have_forward_ = true;
    }

    // grad: (T, B, out_features) dL/dy, or dL/dz with wrt_logits; dh_n: (states, B, H) or null.
    // dx: (T, B, I) or null (never for token inputs); dh0: (states, B, H);
    // norms: (states, T) |dL/ds_t| per layer and direction.
    // Layer by layer from the top, each direction chunk by chunk of steps (see
    // rnn_layer_backward): the top layer's dL/ds comes from grad chunk by chunk; between
    // layers, dL/d(layer input) of all steps lives in a buffer of this call only.
    void backward(T* dx, T* dh0, T* norms, const T* grad, const T* dh_n, bool wrt_logits) {
        if (!have_forward_) throw std::logic_error("backward() needs a forward() first");
        const Index H = cfg.hidden_size, D = directions(), L = cfg.num_layers, Tn = T_, B = B_, N = Tn * B;
        const Index DH = D * H, I = cfg.input_size, O = cfg.output_size;
        const std::int32_t* len = lengths_.empty() ? nullptr : lengths_.data();
        T* g = grads_.get();
        const T* p = params_.get();
        // dL/dz has to be changed from what the caller gave: f_o's Jacobian, zeros past the ends.
        const bool edit_dz = O > 0 && ((!wrt_logits && cfg.out_act != OutAct::none) || len);
        const bool token_ids = cfg.vocab_size > 0;
        const Index chunk = backward_chunk_steps<T>(Tn, B, H), rows = chunk * B;
        const int slots = std::max(1, get_num_threads());
        // Between layers: one buffer, updated in place, for one direction; two for two.
        const int nbuf = L == 1 ? 0 : D == 1 || L == 2 ? 1 : 2;
        Scratch work;
        const std::size_t o_WhTp = work.add(packed_size<T>(H, H)), o_tmp = work.add(B * H),
                          o_first = work.add(B * H), o_sumsq = work.add(slots * Tn), o_G = work.add(rows * H);
        // A chunk of the layer input when it is not stored: embedded ids, a dropped input.
        const Index xc_cols = std::max(token_ids ? I : 0, dropped_ ? DH : 0);
        const std::size_t o_dz = edit_dz ? work.add(rows * O) : 0, o_Xc = xc_cols ? work.add(rows * xc_cols) : 0;
        std::size_t o_buf[2] = {0, 0};
        for (int i = 0; i < nbuf; ++i) o_buf[i] = work.add(N * DH);
        work.allocate();
        scratch_bytes_ = std::max(scratch_bytes_, work.bytes());
        if (dh_n)
            std::memcpy(dh0, dh_n, sizeof(T) * states() * B * H);
        else
            std::fill(dh0, dh0 + states() * B * H, T(0));
        const T* top = out_[L - 1].data();
        if (O > 0 && !edit_dz) {  // the output layer's weights in one product each
            gemm<T>({DH, O, N, top, DH, true, grad, O, false, nullptr, g + W_y_, O, true});
            column_sums(g + b_y_, grad, N, O, O);
        }
        // dL/dz of steps [t0, t1): the caller's rows, or changed in the chunk buffer.
        auto dz_rows = [&](Index t0, Index t1) -> const T* {
            const T* src = grad + t0 * B * O;
            if (!edit_dz) return src;
            T* dz = work.at(o_dz);
            const Index n = (t1 - t0) * B;
            std::memcpy(dz, src, sizeof(T) * n * O);
            if (!wrt_logits) output_activation_backward(dz, Y_.data() + t0 * B * O, n, O, cfg.out_act);
            zero_padding(dz, O, t0, t1);
            return dz;
        };
        for (Index l = L - 1; l >= 0; --l) {
            const Index in = cells_[l * D].in;
            const T* src = l < L - 1 ? work.at(o_buf[nbuf == 1 ? 0 : (L - 2 - l) % 2]) : nullptr;
            T* dst = l > 0 ? work.at(o_buf[nbuf == 1 ? 0 : (L - 1 - l) % 2]) : nullptr;
            const std::uint8_t* kept = l < L - 1 && dropped_ ? kept_[l + 1].data() : nullptr;
            for (Index d = 0; d < D; ++d) {
                const Cell& c = cells_[l * D + d];
                const Index k = l * D + d;
                auto fill = [&](T* G, Index t0, Index t1) {
                    const Index n = (t1 - t0) * B, r0 = t0 * B;
                    if (l < L - 1) {  // dL/d(the layer above's input), through its dropout mask
                        for (Index r = 0; r < n; ++r) {
                            const Index o = (r0 + r) * DH + d * H;
                            if (kept)
                                drop(G + r * H, src + o, kept + o, H);
                            else
                                std::memcpy(G + r * H, src + o, sizeof(T) * H);
                        }
                    } else if (O > 0) {  // dL/ds = dL/dz W_y^T, this direction's rows of W_y
                        const T* dz = dz_rows(t0, t1);
                        if (edit_dz && d == 0) {
                            gemm<T>({DH, O, n, top + r0 * DH, DH, true, dz, O, false, nullptr, g + W_y_, O, true});
                            column_sums(g + b_y_, dz, n, O, O);
                        }
                        gemm<T>({n, H, O, dz, O, false, p + W_y_ + d * H * O, O, true, nullptr, G, H, false});
                    } else {
                        for (Index r = 0; r < n; ++r)
                            std::memcpy(G + r * H, grad + (r0 + r) * DH + d * H, sizeof(T) * H);
                    }
                };
                auto input = [&](Index t0, Index t1) -> const T* {
                    if (l > 0 && dropped_) {
                        T* Xc = work.at(o_Xc);
                        drop(Xc, layer_input(l) + t0 * B * in, kept_[l].data() + t0 * B * in, (t1 - t0) * B * in);
                        return Xc;
                    }
                    if (l > 0 || !token_ids) return layer_input(l) + t0 * B * in;
                    T* Xc = work.at(o_Xc);
                    const T* E = p + E_;
                    for (Index n = t0 * B; n < t1 * B; ++n)
                        std::memcpy(Xc + (n - t0 * B) * I, E + ids_[n] * I, sizeof(T) * I);
                    return Xc;
                };
                auto drain = [&](const T* G, Index t0, Index t1) {
                    const Index n = (t1 - t0) * B;
                    T* out = l > 0 ? dst + t0 * B * in : token_ids ? work.at(o_Xc) : dx ? dx + t0 * B * in : nullptr;
                    if (!out) return;
                    gemm<T>({n, in, H, G, H, false, p + c.W_x, H, true, nullptr, out, in, d > 0 && !(l == 0 && token_ids)});
                    if (l == 0 && token_ids)  // scatter-add into the rows of E that were used
                        for (Index r = 0; r < n; ++r)
                            RowVec<T>(g + E_ + ids_[t0 * B + r] * I, I) += CRowVec<T>(out + r * I, I);
                };
                rnn_layer_backward(g + c.W_x, g + c.W_h, g + c.b_h, dh0 + k * B * H, work.at(o_G), chunk,
                                   work.at(o_tmp), work.at(o_first), work.at(o_WhTp), work.at(o_sumsq), slots,
                                   norms ? norms + k * Tn : nullptr, out_[l].data() + d * H,
                                   H0_.empty() ? nullptr : H0_.data() + k * B * H, p + c.W_h, len, Tn, B, in, H, DH,
                                   d == 1, cfg.act, fill, input, drain);
            }
        }
        if (used_learned_h0_)
            for (Index k = 0; k < states(); ++k)
                RowVec<T>(g + h0_ + k * H, H) += cmat(dh0 + k * B * H, B, H, H).colwise().sum();
    }

    // One step of every layer for B rows, for streaming inference: x (B, I) or ids (B),
    // states h (states, B, H) or null (the initial state); writes the new states to h_out
    // (may alias h) and the output (B, out_features) to y. No dropout; nothing is kept for
    // backward(), so a pending forward() stays differentiable. Unidirectional models only.
    void step(T* y, T* h_out, const T* x, const std::int64_t* ids, const T* h, Index B) {
        if (cfg.bidirectional) throw std::invalid_argument("step() needs a unidirectional model");
        const Index H = cfg.hidden_size, I = cfg.input_size, L = cfg.num_layers;
        const T* p = params_.get();
        step_s_.resize(L * B * H);
        const T* in = x;
        if (ids) {
            step_in_.resize(B * I);
            for (Index b = 0; b < B; ++b) {
                if (ids[b] < 0 || ids[b] >= cfg.vocab_size)
                    throw std::invalid_argument("x: token ids must be in [0, " + std::to_string(cfg.vocab_size) +
                                                "), got " + std::to_string(ids[b]) +
                                                (B > 1 ? " at x[" + std::to_string(b) + "]" : std::string()));
                std::memcpy(step_in_.data() + b * I, p + E_ + ids[b] * I, sizeof(T) * I);
            }
            in = step_in_.data();
        }
        if (!h) {  // the learned h0 broadcast over the rows, or zeros
            step_old_.assign(L * B * H, T(0));
            if (cfg.learn_h0)
                for (Index l = 0; l < L; ++l)
                    for (Index b = 0; b < B; ++b)
                        std::memcpy(step_old_.data() + (l * B + b) * H, p + h0_ + l * H, sizeof(T) * H);
            h = step_old_.data();
        }
        for (Index l = 0; l < L; ++l) {
            const Cell& c = cells_[l];
            T* out = step_s_.data() + l * B * H;
            rnn_cell_forward(out, in, h + l * B * H, p + c.W_x, p + c.W_h, p + c.b_h, B, c.in, H, cfg.act);
            in = out;
        }
        if (cfg.output_size > 0)
            output_forward(y, in, p + W_y_, p + b_y_, B, H, cfg.output_size, cfg.out_act);
        else
            std::memcpy(y, in, sizeof(T) * B * H);
        std::memcpy(h_out, step_s_.data(), sizeof(T) * L * B * H);
    }

    // Bytes held between calls (parameters and gradients excluded): the stored states, the
    // input when it is a copy or a private array, and what else backward() needs.
    std::size_t workspace_bytes() const {
        std::size_t n = X0_.capacity() + H0_.capacity() + Y_.capacity() + step_in_.capacity() +
                        step_s_.capacity() + step_old_.capacity();
        if (x_private_ && x0_) n += static_cast<std::size_t>(T_ * B_ * cfg.input_size);
        for (const auto& b : out_) n += b.capacity();
        std::size_t bytes = n * sizeof(T);
        for (const auto& b : kept_) bytes += b.capacity();
        return bytes + ids_.capacity() * sizeof(std::int64_t) + lengths_.capacity() * sizeof(std::int32_t);
    }

    // Bytes of the largest workspace of one call since the last forward(), allocated when
    // the call starts and released when it returns (W_h packed, a chunk of gradients, ...).
    std::size_t scratch_bytes() const { return scratch_bytes_; }

private:
    struct Cell {
        std::size_t W_x, W_h, b_h;
        Index in;
    };

    static std::unique_ptr<T[], AlignedFree<T>> alloc(std::size_t n, bool zero = true) {
        // 64-byte alignment: one cache line, one AVX-512 register.
        std::size_t bytes = ((std::max<std::size_t>(n, 1) * sizeof(T) + 63) / 64) * 64;
        T* p = static_cast<T*>(std::aligned_alloc(64, bytes));
        if (!p) throw std::bad_alloc();
        if (zero) std::fill(p, p + n, T(0));
        return std::unique_ptr<T[], AlignedFree<T>>(p);
    }

    // The workspaces of one call, carved from one allocation released when the call returns:
    // nothing dead is kept between calls, and nothing is allocated inside the loops. Small
    // ones come from a per-thread cache shared by all models (like the GEMM's packing
    // buffers): at the smallest shapes a fresh allocation costs ~5 % of the call.
    static constexpr std::size_t kCachedScratchBytes = 256 << 10;
    class Scratch {
    public:
        Scratch() = default;
        Scratch(const Scratch&) = delete;
        Scratch& operator=(const Scratch&) = delete;
        ~Scratch() {
            if (cache_) cache_->busy = false;
        }
        std::size_t add(Index n) {  // each piece starts on a cache line
            const std::size_t off = size_, align = 64 / sizeof(T);
            size_ += (static_cast<std::size_t>(n) + align - 1) / align * align;
            return off;
        }
        void allocate() {
            thread_local Cache cache;
            if (bytes() <= kCachedScratchBytes && !cache.busy) {
                if (!cache.mem) cache.mem = alloc(kCachedScratchBytes / sizeof(T), false);
                cache.busy = true;
                cache_ = &cache;
                p_ = cache.mem.get();
            } else {
                mem_ = alloc(size_, false);
                p_ = mem_.get();
            }
        }
        T* at(std::size_t off) { return p_ + off; }
        std::size_t bytes() const { return size_ * sizeof(T); }

    private:
        struct Cache {
            std::unique_ptr<T[], AlignedFree<T>> mem;
            bool busy = false;
        };
        std::size_t size_ = 0;
        std::unique_ptr<T[], AlignedFree<T>> mem_;
        Cache* cache_ = nullptr;
        T* p_ = nullptr;
    };

    // Kept buffers hold exactly what the last call needs, not the most any call needed.
    template <class V>
    static void fit(V& v, std::size_t n) {
        if (v.capacity() == n) return v.resize(n);
        V fresh(n);
        v.swap(fresh);
    }
    template <class V>
    static void release(V& v) {
        V().swap(v);
    }

    // The stored input of layer l: x, or the states below (before dropout).
    const T* layer_input(Index l) const { return l == 0 ? x0_ : out_[l - 1].data(); }

    // out = in * (1/p where kept, else 0): the inverted dropout of n values.
    void drop(T* out, const T* in, const std::uint8_t* kept, Index n) const {
        const T scale = T(1) / T(1.0 - cfg.dropout);
        for (Index i = 0; i < n; ++i) out[i] = in[i] * (kept[i] ? scale : T(0));
    }

    // Outputs and their gradients are zero at steps past a sequence's length; A holds the
    // rows of steps [t0, t1).
    void zero_padding(T* A, Index cols, Index t0, Index t1) const {
        if (lengths_.empty()) return;
        for (Index t = t0; t < t1; ++t)
            for (Index b = 0; b < B_; ++b)
                if (t >= lengths_[b])
                    std::fill(A + ((t - t0) * B_ + b) * cols, A + ((t - t0) * B_ + b + 1) * cols, T(0));
    }

    std::unique_ptr<T[], AlignedFree<T>> params_, grads_;
    std::size_t size_ = 0;
    std::vector<Cell> cells_;
    std::size_t E_ = 0, h0_ = 0, W_y_ = 0, b_y_ = 0;
    std::mt19937_64 rng_;
    std::mutex mutex_;

    // Context of the last forward call.
    bool have_forward_ = false, used_learned_h0_ = false, dropped_ = false;
    Index T_ = 0, B_ = 0;
    Buffer<T> X0_, H0_, Y_;  // copy of x (unless x_owner_ keeps x), h0 when not zeros, f_o's outputs
    const T* x0_ = nullptr;   // layer 0's input (null for token ids, looked up again)
    std::shared_ptr<const void> x_owner_;
    bool x_private_ = false;
    std::vector<std::int64_t> ids_;
    std::vector<std::int32_t> lengths_;
    std::vector<Buffer<T>> out_;                 // per layer: states (T, B, D*H)
    std::vector<std::vector<std::uint8_t>> kept_;  // per layer: dropout's choices for its input
    std::size_t scratch_bytes_ = 0;
    Buffer<T> step_in_, step_s_, step_old_;  // step(): embedded input, new and initial states
};

}  // namespace rnnext
