#include "nn/serialize.hpp"

#include "nn/npz.hpp"

#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace ad::nn {

namespace {

const std::string optim_prefix = "optim.";
const std::string step_key = "optim.step";
const std::string lr_key = "optim.lr";

bool has_prefix(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Everything a saved model holds, as (key, where it lives in memory).
template <class T>
struct Slots {
    struct Slot {
        std::string key;
        Tensor<T>* tensor;    // a buffer or optimiser state; null for a parameter
        Parameter<T>* param;  // a parameter, written through set_value() so that the change is counted

        const Tensor<T>& current() const { return param ? param->value() : *tensor; }
        void assign(Tensor<T> v) const
        {
            if (param) param->set_value(std::move(v));
            else *tensor = std::move(v);
        }
    };
    std::vector<Slot> tensors;
    Optimizer<T>* optimizer = nullptr;
};

template <class T>
void add_model(Slots<T>& s, const NamedParameters<T>& params, const std::vector<std::pair<std::string, Tensor<T>*>>& buffers,
               const char* fn)
{
    for (const auto& [name, p] : params) {
        if (!p) throw Error(std::string(fn) + ": parameter " + name + " is null");
        if (has_prefix(name, optim_prefix))
            throw Error(std::string(fn) + ": parameter name '" + name + "' clashes with the optimiser's \"optim.\" keys");
        s.tensors.push_back({name, nullptr, p});
    }
    for (const auto& [name, b] : buffers) {
        if (has_prefix(name, optim_prefix))
            throw Error(std::string(fn) + ": buffer name '" + name + "' clashes with the optimiser's \"optim.\" keys");
        s.tensors.push_back({name, b, nullptr});
    }
}

template <class T>
void add_optimizer(Slots<T>& s, Optimizer<T>& opt)
{
    s.optimizer = &opt;
    for (const auto& [name, t] : opt.named_state()) s.tensors.push_back({optim_prefix + name, t, nullptr});
}

template <class T>
void save_slots(const Slots<T>& s, const std::string& path)
{
    NpzWriter w;
    for (const auto& slot : s.tensors) w.add(slot.key, slot.current());
    if (s.optimizer) {
        w.add_scalar(step_key, double(s.optimizer->step_count()));
        w.add_scalar(lr_key, s.optimizer->lr());
    }
    w.write(path);
}

// "1,234,567": counts in messages.
std::string grouped(std::size_t n)
{
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

// The first `shown` problems joined by "; ", then how many more there are: a file of 10,000
// stray arrays gets a message of ten lines' worth, not half a megabyte.
std::string join_bounded(const std::vector<std::string>& problems, std::size_t shown = 10)
{
    std::string msg;
    for (std::size_t i = 0; i < problems.size() && i < shown; ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > shown) msg += "; ... and " + grouped(problems.size() - shown) + " more";
    return msg;
}

// "[1, 2]": the multi-index of flat position k in a C-order array of `shape`.
std::string position(std::size_t k, const Shape& shape)
{
    std::vector<std::size_t> idx(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        idx[d] = shape[d] ? k % shape[d] : 0;
        k = shape[d] ? k / shape[d] : 0;
    }
    std::string s = "[";
    for (std::size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
    return s + "]";
}

std::string value_str(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

// NaN, an infinity, or a finite value that T cannot hold (1e300 into float): the first such
// element, described, or "" when there is none.
template <class T>
std::string first_bad_value(const std::string& key, const NpyArray& a)
{
    const double top = double(std::numeric_limits<T>::max());
    for (std::size_t k = 0; k < a.data.size(); ++k) {
        const double v = a.data[k];
        if (!std::isfinite(v))
            return key + " holds " + value_str(v) + " at " + position(k, a.shape) + "; a saved model must hold finite values";
        if (std::abs(v) > top)
            return key + " holds " + value_str(v) + " at " + position(k, a.shape) + ", outside the range of " +
                   (sizeof(T) == 4 ? "float" : "double") + " (largest " + value_str(top) + ")";
    }
    return "";
}

template <class T>
void load_slots(const Slots<T>& s, const std::string& path)
{
    // Each array's shape is compared with the model's as soon as its header is read: only the
    // arrays the model takes, at their own shapes, are inflated. The limit on the whole read is
    // what the model can hold (in float64) plus room for the scalars.
    std::map<std::string, const Tensor<T>*> wanted;
    std::uint64_t model_bytes = 4096;
    for (const auto& slot : s.tensors) {
        wanted.emplace(slot.key, &slot.current());
        model_bytes += 8 * std::uint64_t(slot.current().size());
    }
    NpzReadOptions options;
    options.max_bytes = model_bytes;
    options.filter = [&](const std::string& name, const std::string&, const Shape& shape) {
        if (s.optimizer && (name == step_key || name == lr_key)) return shape.empty();
        const auto it = wanted.find(name);
        return it != wanted.end() && equal_shapes(shape, it->second->shape());
    };
    const NpzArchive archive = read_npz(path, options);  // a corrupt file stops here

    std::map<std::string, const NpyArray*> in_file;
    for (const auto& [name, a] : archive) in_file.emplace(name, &a);

    std::vector<std::string> problems;
    std::map<std::string, bool> expected;
    // The optimiser's scalars first: a bounded message still shows them.
    double step = 0, lr = 0;
    if (s.optimizer) {
        auto scalar = [&](const std::string& key, double& out, bool integer) {
            expected[key] = true;
            const auto it = in_file.find(key);
            if (it == in_file.end()) {
                problems.push_back("missing " + key);
                return;
            }
            const NpyArray& a = *it->second;
            if (!a.has_data || a.data.size() != 1 || !a.shape.empty()) {
                problems.push_back(key + " has shape " + shape_str(a.shape) + ", expected a scalar ()");
                return;
            }
            out = a.data[0];
            if (!std::isfinite(out) || out < 0 || (integer && (out != std::floor(out) || out > 9.007199254740992e15)))
                problems.push_back(key + " is " + std::to_string(out) + ", expected a finite " +
                                   (integer ? "non-negative integer" : "non-negative number"));
        };
        scalar(step_key, step, true);
        scalar(lr_key, lr, false);
    }
    for (const auto& slot : s.tensors) {
        expected[slot.key] = true;
        const auto it = in_file.find(slot.key);
        if (it == in_file.end()) {
            problems.push_back("missing " + slot.key + " " + shape_str(slot.current().shape()));
        } else if (!equal_shapes(it->second->shape, slot.current().shape())) {
            problems.push_back(slot.key + " has shape " + shape_str(it->second->shape) + " in the file but " +
                               shape_str(slot.current().shape()) + " in the model");
        }
    }
    for (const auto& [name, a] : archive)
        if (!expected.count(name) && !(s.optimizer == nullptr && has_prefix(name, optim_prefix)))
            problems.push_back("unexpected " + name + " " + shape_str(a.shape) + " (the model has no such tensor)");

    if (!problems.empty())
        throw Error("load: " + path + " does not match the model (nothing was loaded): " + join_bounded(problems));
    for (const auto& slot : s.tensors) {
        const std::string bad = first_bad_value<T>(slot.key, *in_file.at(slot.key));
        if (!bad.empty()) problems.push_back(bad);
    }
    if (!problems.empty())
        throw Error("load: " + path + " holds values the model cannot take (nothing was loaded): " +
                    join_bounded(problems));

    // Everything checked: convert first (the only step left that can fail, by running out of
    // memory), then assign.
    std::vector<Tensor<T>> values;
    values.reserve(s.tensors.size());
    for (const auto& slot : s.tensors) values.push_back(in_file.at(slot.key)->template to_tensor<T>());
    for (std::size_t i = 0; i < s.tensors.size(); ++i) s.tensors[i].assign(std::move(values[i]));
    if (s.optimizer) {
        s.optimizer->set_step_count(static_cast<std::uint64_t>(step));
        s.optimizer->set_lr(lr);
    }
}

}  // namespace

template <class T>
void save(Module<T>& model, const std::string& path)
{
    Slots<T> s;
    add_model(s, model.named_parameters(), model.named_buffers(), "save");
    save_slots(s, path);
}

template <class T>
void save(Module<T>& model, Optimizer<T>& optimizer, const std::string& path)
{
    Slots<T> s;
    add_model(s, model.named_parameters(), model.named_buffers(), "save");
    add_optimizer(s, optimizer);
    save_slots(s, path);
}

template <class T>
void load(Module<T>& model, const std::string& path)
{
    Slots<T> s;
    add_model(s, model.named_parameters(), model.named_buffers(), "load");
    load_slots(s, path);
}

template <class T>
void load(Module<T>& model, Optimizer<T>& optimizer, const std::string& path)
{
    Slots<T> s;
    add_model(s, model.named_parameters(), model.named_buffers(), "load");
    add_optimizer(s, optimizer);
    load_slots(s, path);
}

template <class T>
void save(const NamedParameters<T>& params, const std::string& path)
{
    Slots<T> s;
    add_model(s, params, {}, "save");
    save_slots(s, path);
}

template <class T>
void load(const NamedParameters<T>& params, const std::string& path)
{
    Slots<T> s;
    add_model(s, params, {}, "load");
    load_slots(s, path);
}

#define AD_SERIALIZE_INSTANTIATE(T)                                                     \
    template void save<T>(Module<T>&, const std::string&);                              \
    template void save<T>(Module<T>&, Optimizer<T>&, const std::string&);               \
    template void load<T>(Module<T>&, const std::string&);                              \
    template void load<T>(Module<T>&, Optimizer<T>&, const std::string&);               \
    template void save<T>(const NamedParameters<T>&, const std::string&);               \
    template void load<T>(const NamedParameters<T>&, const std::string&);

AD_SERIALIZE_INSTANTIATE(float)
AD_SERIALIZE_INSTANTIATE(double)

}  // namespace ad::nn
