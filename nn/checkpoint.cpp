#include "nn/checkpoint.hpp"

#include "nn/npz.hpp"

#include <cmath>
#include <map>

namespace ad::nn {

namespace {

const std::string optim_prefix = "optim.";
const std::string step_key = "optim.step";
const std::string lr_key = "optim.lr";

bool has_prefix(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Everything a checkpoint holds, as (key, where it lives in memory).
template <class T>
struct Slots {
    struct Slot {
        std::string key;
        Tensor<T>* tensor;
        Parameter<T>* param;  // set for parameters, whose value is `tensor` and need mark_modified()
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
        s.tensors.push_back({name, &p->value, p});
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
    for (const auto& slot : s.tensors) w.add(slot.key, *slot.tensor);
    if (s.optimizer) {
        w.add_scalar(step_key, double(s.optimizer->step_count()));
        w.add_scalar(lr_key, s.optimizer->lr());
    }
    w.write(path);
}

template <class T>
void load_slots(const Slots<T>& s, const std::string& path)
{
    const NpzArchive archive = read_npz(path);  // a corrupt file stops here

    std::map<std::string, const NpyArray*> in_file;
    for (const auto& [name, a] : archive) in_file.emplace(name, &a);

    std::vector<std::string> problems;
    std::map<std::string, bool> expected;
    for (const auto& slot : s.tensors) {
        expected[slot.key] = true;
        const auto it = in_file.find(slot.key);
        if (it == in_file.end()) {
            problems.push_back("missing " + slot.key + " " + shape_str(slot.tensor->shape()));
        } else if (!detail::same_shape(it->second->shape, slot.tensor->shape())) {
            problems.push_back(slot.key + " has shape " + shape_str(it->second->shape) + " in the file but " +
                               shape_str(slot.tensor->shape()) + " in the model");
        }
    }
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
            if (a.data.size() != 1 || !a.shape.empty()) {
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
    for (const auto& [name, a] : archive)
        if (!expected.count(name) && !(s.optimizer == nullptr && has_prefix(name, optim_prefix)))
            problems.push_back("unexpected " + name + " " + shape_str(a.shape) + " (the model has no such tensor)");

    if (!problems.empty()) {
        std::string msg = "checkpoint " + path + " does not match the model (nothing was loaded): ";
        for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
        throw Error(msg);
    }

    // Everything checked: convert first (the only step left that can fail, by running out of
    // memory), then assign.
    std::vector<Tensor<T>> values;
    values.reserve(s.tensors.size());
    for (const auto& slot : s.tensors) values.push_back(in_file.at(slot.key)->template to_tensor<T>());
    for (std::size_t i = 0; i < s.tensors.size(); ++i) {
        *s.tensors[i].tensor = std::move(values[i]);
        if (s.tensors[i].param) s.tensors[i].param->mark_modified();
    }
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

#define AD_CHECKPOINT_INSTANTIATE(T)                                                     \
    template void save<T>(Module<T>&, const std::string&);                              \
    template void save<T>(Module<T>&, Optimizer<T>&, const std::string&);               \
    template void load<T>(Module<T>&, const std::string&);                              \
    template void load<T>(Module<T>&, Optimizer<T>&, const std::string&);               \
    template void save<T>(const NamedParameters<T>&, const std::string&);               \
    template void load<T>(const NamedParameters<T>&, const std::string&);

AD_CHECKPOINT_INSTANTIATE(float)
AD_CHECKPOINT_INSTANTIATE(double)

}  // namespace ad::nn
