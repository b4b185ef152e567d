// The only file that knows Python: converts arrays while holding the GIL, then releases it
// around the engine's work. Argument checking with user-facing messages is done by the
// Python layer (python/rnnext/rnn.py); the checks here only guard memory safety.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "model.hpp"

namespace py = pybind11;
using namespace rnnext;

template <class T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
using IdArr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using LenArr = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;

static void expect_size(const py::array& a, py::ssize_t n, const char* name) {
    if (a.size() != n)
        throw py::value_error(std::string(name) + ": expected " + std::to_string(n) + " elements, got " +
                              std::to_string(a.size()));
}

static std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// A C-contiguous array of the model's dtype from real numbers only: forcecast alone would
// drop the imaginary part of complex input silently.
template <class T>
static Arr<T> real_array(py::handle obj, const char* name, const char* or_none) {
    py::object held = py::reinterpret_borrow<py::object>(obj);
    // A torch tensor is read as values, detached from autograd, as forward() reads it.
    if (!py::isinstance<py::array>(obj) && py::hasattr(obj, "detach") && py::hasattr(obj, "cpu"))
        held = obj.attr("detach")().attr("cpu")();
    py::array raw = py::array::ensure(held);
    const char kind = raw ? raw.dtype().kind() : 'O';
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
        throw py::type_error(std::string(name) + ": expected an array of real numbers" + or_none + ", got " +
                             (obj.is_none() ? std::string("None")
                              : raw         ? "dtype " + std::string(py::str(raw.dtype()))
                                            : std::string(py::str(py::type::of(obj).attr("__name__")))));
    return Arr<T>::ensure(raw);
}

// One streaming step (see Model::step): x (I,) or (B, I) (token ids: () or (B,)), h in the
// shape forward() takes for h0 or None; returns (y, h_new). Checked here, not in Python, so
// that a call costs about a microsecond.
template <class T>
static py::tuple model_step(Model<T>& self, py::handle x, py::handle h) {
    const Index H = self.cfg.hidden_size, I = self.cfg.input_size, S = self.states();
    Arr<T> xa, ha;  // default-constructed array_t are empty arrays, not null: use the pointers
    IdArr ia;
    const T *xp = nullptr, *hp = nullptr;
    const std::int64_t* ip = nullptr;
    bool unbatched;
    Index B;
    if (self.cfg.vocab_size > 0) {
        py::array raw = py::array::ensure(x);
        if (!raw || (raw.dtype().kind() != 'i' && raw.dtype().kind() != 'u'))
            throw py::type_error("x: expected integer token ids, got " +
                                 std::string(raw ? "an array of dtype " + std::string(py::str(raw.dtype()))
                                                 : std::string(py::str(py::type::of(x).attr("__name__")))));
        ia = IdArr::ensure(raw);
        if (ia.ndim() > 1) throw py::value_error("x: expected token ids of shape () or (B,), got shape " + shape_of(ia));
        unbatched = ia.ndim() == 0;
        B = unbatched ? 1 : ia.shape(0);
        ip = ia.data();
    } else {
        xa = real_array<T>(x, "x", "");
        if ((xa.ndim() != 1 && xa.ndim() != 2) || xa.shape(xa.ndim() - 1) != I)
            throw py::value_error("x: expected shape (" + std::to_string(I) + ",) or (B, " + std::to_string(I) +
                                  "), got shape " + shape_of(xa));
        unbatched = xa.ndim() == 1;
        B = unbatched ? 1 : xa.shape(0);
        xp = xa.data();
    }
    std::vector<py::ssize_t> hshape;  // as forward() takes h0
    if (!unbatched) hshape.push_back(B);
    hshape.push_back(H);
    if (!h.is_none()) {
        ha = real_array<T>(h, "h", " or None");
        // PyTorch's leading (num_layers * directions) axis: always with S > 1, optional with S = 1;
        // h_new has the rank of the h given.
        if (S > 1 || ha.ndim() == static_cast<py::ssize_t>(hshape.size()) + 1) hshape.insert(hshape.begin(), S);
        bool same = ha.ndim() == static_cast<py::ssize_t>(hshape.size());
        for (std::size_t i = 0; same && i < hshape.size(); ++i) same = ha.shape(i) == hshape[i];
        if (!same) {
            Arr<T> want(hshape);
            std::string also;  // a one-layer model takes PyTorch's (1, B, H) too
            if (S == 1 && hshape.size() == (unbatched ? 1u : 2u)) {
                std::vector<py::ssize_t> s3(hshape);
                s3.insert(s3.begin(), 1);
                also = " or " + shape_of(Arr<T>(s3));
            }
            throw py::value_error("h: expected shape " + shape_of(want) + also + ", got shape " + shape_of(ha));
        }
        hp = ha.data();
    } else if (S > 1) {
        hshape.insert(hshape.begin(), S);
    }
    std::vector<py::ssize_t> yshape;
    if (!unbatched) yshape.push_back(B);
    yshape.push_back(self.out_features());
    Arr<T> y(yshape), h_new(hshape);
    T* yp = y.mutable_data();
    T* hnp = h_new.mutable_data();
    if (double(B) * double(H) * double(H + I) * double(S) < (1 << 16)) {  // shorter than a GIL round trip
        std::lock_guard<std::mutex> lock(self.mutex());
        self.step(yp, hnp, xp, ip, hp, B);
    } else {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(self.mutex());
        self.step(yp, hnp, xp, ip, hp, B);
    }
    return py::make_tuple(y, h_new);
}

static Act parse_act(const std::string& s) {
    if (s == "tanh") return Act::tanh;
    if (s == "relu") return Act::relu;
    if (s == "sigmoid") return Act::sigmoid;
    throw py::value_error("nonlinearity: expected 'tanh', 'relu' or 'sigmoid', got '" + s + "'");
}

static OutAct parse_out_act(const std::string& s) {
    if (s == "none") return OutAct::none;
    if (s == "sigmoid") return OutAct::sigmoid;
    if (s == "softmax") return OutAct::softmax;
    throw py::value_error("output_activation: expected 'none', 'sigmoid' or 'softmax', got '" + s + "'");
}

template <class T>
static void bind_model(py::module_& m, const char* name) {
    using M = Model<T>;
    py::class_<M>(m, name)
        .def(py::init([](Index input_size, Index hidden_size, Index output_size, Index num_layers, Index vocab_size,
                         bool bidirectional, bool learn_h0, double dropout, const std::string& act,
                         const std::string& out_act) {
                 Config c;
                 c.input_size = input_size;
                 c.hidden_size = hidden_size;
                 c.output_size = output_size;
                 c.num_layers = num_layers;
                 c.vocab_size = vocab_size;
                 c.bidirectional = bidirectional;
                 c.learn_h0 = learn_h0;
                 c.dropout = dropout;
                 c.act = parse_act(act);
                 c.out_act = parse_out_act(out_act);
                 return new M(c);
             }),
             py::arg("input_size"), py::arg("hidden_size"), py::arg("output_size"), py::arg("num_layers"),
             py::arg("vocab_size"), py::arg("bidirectional"), py::arg("learn_h0"), py::arg("dropout"),
             py::arg("nonlinearity"), py::arg("output_activation"))
        .def_property_readonly("layout",
                               [](const M& self) {
                                   py::list out;
                                   for (const auto& t : self.layout)
                                       out.append(py::make_tuple(t.name, t.offset, py::tuple(py::cast(t.shape))));
                                   return out;
                               })
        // Flat 1-D views of the parameter and gradient buffers; they keep the model alive.
        .def_property_readonly("params",
                               [](py::object self) {
                                   M& s = self.cast<M&>();
                                   return py::array_t<T>({(py::ssize_t)s.size()}, {sizeof(T)}, s.params(), self);
                               })
        .def_property_readonly("grads",
                               [](py::object self) {
                                   M& s = self.cast<M&>();
                                   return py::array_t<T>({(py::ssize_t)s.size()}, {sizeof(T)}, s.grads(), self);
                               })
        .def_property_readonly("has_forward", &M::has_forward)
        .def_property_readonly("workspace_bytes", &M::workspace_bytes)
        .def_property_readonly("scratch_bytes", &M::scratch_bytes)
        .def("step", &model_step<T>, py::arg("x"), py::arg("h"))
        .def("seed", [](M& self, std::uint64_t s) { self.seed(s); })
        .def("zero_grad",
             [](M& self) {
                 py::gil_scoped_release nogil;
                 std::lock_guard<std::mutex> lock(self.mutex());
                 self.zero_grad();
             })
        .def(
            "forward",
            [](M& self, std::optional<Arr<T>> x, std::optional<IdArr> ids, std::optional<Arr<T>> h0,
               std::optional<LenArr> lengths, Index Tn, Index B, bool training, bool keep_x, bool x_private) {
                const Index H = self.cfg.hidden_size;
                if (x.has_value() == ids.has_value()) throw py::value_error("exactly one of x and ids is needed");
                if (Tn < 0 || B < 0) throw py::value_error("T and B must be non-negative");
                if (x) expect_size(*x, checked_mul(checked_mul(Tn, B), self.cfg.input_size), "x");
                if (ids) expect_size(*ids, checked_mul(Tn, B), "ids");
                if (ids && self.cfg.vocab_size == 0) throw py::value_error("ids given to a model without vocabulary");
                if (x && self.cfg.vocab_size > 0) throw py::value_error("x given to a model with a vocabulary");
                if (h0) expect_size(*h0, checked_mul(self.states() * B, H), "h0");
                if (lengths) expect_size(*lengths, B, "lengths");
                Arr<T> y({Tn, B, self.out_features()});
                Arr<T> h_n({self.states(), B, H});
                const T* xp = x ? x->data() : nullptr;
                const std::int64_t* ip = ids ? ids->data() : nullptr;
                const T* hp = h0 ? h0->data() : nullptr;
                const std::int32_t* lp = lengths ? lengths->data() : nullptr;
                T* yp = y.mutable_data();
                T* hnp = h_n.mutable_data();
                // keep_x: the caller vouches that x stays unchanged (a private or read-only
                // array), so the model keeps a reference to it instead of a copy.
                std::shared_ptr<const void> owner;
                if (x && keep_x) {
                    PyObject* o = x->ptr();
                    Py_INCREF(o);
                    owner = std::shared_ptr<const void>(xp, [o](const void*) {
                        py::gil_scoped_acquire gil;
                        Py_DECREF(o);
                    });
                }
                {
                    py::gil_scoped_release nogil;
                    std::lock_guard<std::mutex> lock(self.mutex());
                    self.forward(yp, hnp, xp, ip, hp, lp, Tn, B, training, &owner, x_private);
                }
                // owner now holds the reference the call replaced: released here, with the GIL
                // and without the model's lock (a step() may hold the lock and wait for the GIL).
                owner.reset();
                return py::make_tuple(y, h_n);
            },
            py::arg("x"), py::arg("ids"), py::arg("h0"), py::arg("lengths"), py::arg("T"), py::arg("B"),
            py::arg("training"), py::arg("keep_x") = false, py::arg("x_private") = false)
        .def(
            "backward",
            [](M& self, Arr<T> grad, std::optional<Arr<T>> dh_n, bool wrt_logits, bool want_dx) {
                if (!self.has_forward()) throw py::value_error("backward() needs a forward() first");
                const Index Tn = self.last_T(), B = self.last_B(), H = self.cfg.hidden_size;
                expect_size(grad, Tn * B * self.out_features(), "grad");
                if (dh_n) expect_size(*dh_n, self.states() * B * H, "dh_n");
                want_dx = want_dx && self.cfg.vocab_size == 0;
                Arr<T> dx(want_dx ? std::vector<py::ssize_t>{Tn, B, self.cfg.input_size}
                                  : std::vector<py::ssize_t>{0});
                Arr<T> dh0({self.states(), B, H});
                Arr<T> norms({self.states(), Tn});
                const T* gp = grad.data();
                const T* dhp = dh_n ? dh_n->data() : nullptr;
                T* dxp = want_dx ? dx.mutable_data() : nullptr;
                T* dh0p = dh0.mutable_data();
                T* np = norms.mutable_data();
                {
                    py::gil_scoped_release nogil;
                    std::lock_guard<std::mutex> lock(self.mutex());
                    self.backward(dxp, dh0p, np, gp, dhp, wrt_logits);
                }
                return py::make_tuple(want_dx ? py::object(dx) : py::none(), dh0, norms);
            },
            py::arg("grad"), py::arg("dh_n"), py::arg("wrt_logits"), py::arg("want_dx"));
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "rnnext engine: Elman RNN forward and backpropagation through time";
    m.def(
        "set_num_threads",
        [](int n) {
            if (n < 1) throw py::value_error("n: expected an int >= 1, got " + std::to_string(n));
            set_num_threads(n);
        },
        py::arg("n"));
    m.def("get_num_threads", &get_num_threads);
    // Fast path of losses.softmax_cross_entropy: (loss summed over rows, dL/dlogits), or None
    // when the arrays are not float32/float64 logits and integer ids or an id is out of
    // range (the Python path then handles the case and names the bad id).
    m.def(
        "softmax_xent",
        [](py::array logits, py::array targets) -> py::object {
            if (logits.ndim() < 1 || targets.ndim() != logits.ndim() - 1) return py::none();
            for (py::ssize_t i = 0; i < targets.ndim(); ++i)
                if (targets.shape(i) != logits.shape(i)) return py::none();
            const char kind = targets.dtype().kind();
            if (kind != 'i' && kind != 'u') return py::none();
            auto run = [&](auto zero) -> py::object {
                using T = decltype(zero);
                Arr<T> z = Arr<T>::ensure(logits);
                IdArr t = IdArr::ensure(targets);
                if (!z || !t) return py::none();
                const Index C = logits.shape(logits.ndim() - 1), N = C ? z.size() / C : t.size();
                std::vector<py::ssize_t> shape(logits.shape(), logits.shape() + logits.ndim());
                Arr<T> grad(shape);
                double loss = 0;
                bool ok;
                {
                    py::gil_scoped_release nogil;
                    ok = softmax_xent(loss, grad.mutable_data(), z.data(), t.data(), N, C);
                }
                if (!ok) return py::none();
                return py::make_tuple(loss, grad);
            };
            if (logits.dtype().is(py::dtype::of<float>())) return run(float(0));
            if (logits.dtype().is(py::dtype::of<double>())) return run(double(0));
            return py::none();
        },
        py::arg("logits"), py::arg("targets"));
    m.def("gemm_isa", [] { return std::string(gemm_table().isa); });
    // For the tests: backward's chunks of steps get this many rows (0: chosen by shape).
    m.def(
        "_set_backward_chunk_rows",
        [](Index rows) {
            if (rows < 0) throw py::value_error("rows: expected an int >= 0, got " + std::to_string(rows));
            backward_chunk_rows_override().store(rows);
        },
        py::arg("rows"));
    bind_model<float>(m, "ModelF32");
    bind_model<double>(m, "ModelF64");
}
