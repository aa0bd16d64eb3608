// Data-parallel training over MPI: see distributed.hpp for what holds and why.
#include "nn/distributed.hpp"

#include "autodiff/backward.hpp"
#include "nn/checkpoint.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <sstream>

namespace ad::dist {

namespace {

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

// MPI calls return codes (the constructor sets MPI_ERRORS_RETURN on its communicator); a failure
// becomes an ad::Error naming the call and MPI's own message.
void check_mpi(int rc, const char* call)
{
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(std::string(call) + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

int count_of(std::size_t n, const char* who)
{
    if (n > static_cast<std::size_t>(INT_MAX))
        throw Error(std::string(who) + ": " + std::to_string(n) + " elements do not fit one MPI message (at most " +
                    std::to_string(INT_MAX) + ")");
    return static_cast<int>(n);
}

// Whether every rank says ok: a check that fails on one rank must stop every rank before the
// next collective, or the others would wait for it forever.
bool all_agree(bool ok, MPI_Comm comm)
{
    int mine = ok ? 1 : 0, all = 0;
    check_mpi(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
    return all == 1;
}

// FNV-1a over a tensor's shape and bytes.
template <class T>
std::uint64_t hash_of(const Tensor<T>& t)
{
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const unsigned char* p, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            h ^= p[i];
            h *= 1099511628211ull;
        }
    };
    for (auto d : t.shape()) {
        const std::uint64_t v = d;
        mix(reinterpret_cast<const unsigned char*>(&v), sizeof v);
    }
    mix(reinterpret_cast<const unsigned char*>(t.data()), t.size() * sizeof(T));
    return h;
}

// Sends every tensor from root; every rank must hold tensors of the same shapes (checked first,
// collectively, so that a mismatch is an error on every rank rather than a hang).
template <class T>
void broadcast_tensors(const std::vector<std::pair<std::string, Tensor<T>*>>& tensors, int root, MPI_Comm comm,
                       const char* who)
{
    std::vector<std::uint64_t> sizes;
    for (const auto& [name, t] : tensors) sizes.push_back(t->size());
    sizes.push_back(tensors.size());
    std::vector<std::uint64_t> root_sizes = sizes;
    check_mpi(MPI_Bcast(root_sizes.data(), count_of(root_sizes.size(), who), MPI_UINT64_T, root, comm), "MPI_Bcast");
    const bool same = root_sizes == sizes;
    if (!all_agree(same, comm)) {
        std::string msg = std::string(who) + ": the ranks hold different models: ";
        if (same) msg += "another rank's tensors differ from rank " + std::to_string(root) + "'s";
        else if (root_sizes.back() != sizes.back())
            msg += "rank " + std::to_string(root) + " has " + std::to_string(root_sizes.back()) + " tensors, rank " +
                   std::to_string(rank(comm)) + " has " + std::to_string(sizes.back());
        else
            for (std::size_t i = 0; i + 1 < sizes.size(); ++i)
                if (sizes[i] != root_sizes[i]) {
                    msg += "'" + tensors[i].first + "' has " + std::to_string(root_sizes[i]) + " elements on rank " +
                           std::to_string(root) + " and " + std::to_string(sizes[i]) + " on rank " +
                           std::to_string(rank(comm));
                    break;
                }
        throw Error(msg);
    }
    for (const auto& [name, t] : tensors)
        check_mpi(MPI_Bcast(t->data(), count_of(t->size(), who), mpi_type<T>(), root, comm), "MPI_Bcast");
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> parameter_values(nn::Module<T>& model)
{
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    for (auto& [name, p] : model.named_parameters()) out.emplace_back(name, &p->mutable_value());
    return out;
}

}  // namespace

int rank(MPI_Comm comm)
{
    int r = 0;
    check_mpi(MPI_Comm_rank(comm, &r), "MPI_Comm_rank");
    return r;
}

int size(MPI_Comm comm)
{
    int s = 1;
    check_mpi(MPI_Comm_size(comm, &s), "MPI_Comm_size");
    return s;
}

int run(int argc, char** argv, const std::function<int()>& fn)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::string program = argc > 0 && argv[0] ? argv[0] : "program";
    if (const auto slash = program.rfind('/'); slash != std::string::npos) program = program.substr(slash + 1);
    auto fail = [&](const std::string& what) {
        int r = 0, s = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        MPI_Comm_size(MPI_COMM_WORLD, &s);
        std::fflush(stdout);
        std::fprintf(stderr, "%s: rank %d of %d: %s\n", program.c_str(), r, s, what.c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        std::_Exit(1);  // MPI_Abort does not return; this is for an MPI that would
    };
    int result = 0;
    try {
        result = fn();
    } catch (const std::exception& e) {
        fail(e.what());
    } catch (...) {
        fail("an exception that is not a std::exception");
    }
    MPI_Finalize();
    return result;
}

Shard shard(std::size_t global, int rank, int size)
{
    if (size < 1 || rank < 0 || rank >= size)
        throw Error("shard: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                    " ranks; expected size >= 1 and 0 <= rank < size");
    const auto P = static_cast<std::size_t>(size), r = static_cast<std::size_t>(rank);
    const std::size_t base = global / P, extra = global % P;
    Shard s;
    s.global = global;
    s.begin = r * base + std::min(r, extra);
    s.end = s.begin + base + (r < extra ? 1 : 0);
    return s;
}

Sampler::Sampler(std::size_t n, std::size_t global_batch, std::uint64_t seed, int rank, int size)
    : n_(n), batch_(global_batch), seed_(seed), rank_(rank), size_(size)
{
    if (global_batch == 0) throw Error("Sampler: the global batch must hold at least one example, got 0");
    dist::shard(global_batch, rank, size);  // checks rank and size
    set_epoch(0);
}

void Sampler::set_epoch(std::uint64_t epoch)
{
    order_.resize(n_);
    for (std::size_t i = 0; i < n_; ++i) order_[i] = i;
    std::seed_seq seq{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32),
                      static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(epoch >> 32)};
    std::mt19937_64 gen(seq);
    // Fisher-Yates with our own draws, so the permutation does not depend on the standard
    // library's shuffle (ranks built by different compilers still agree).
    for (std::size_t i = n_; i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(gen() % i);
        std::swap(order_[i - 1], order_[j]);
    }
}

std::size_t Sampler::steps() const { return (n_ + batch_ - 1) / batch_; }

Shard Sampler::shard(std::size_t step) const
{
    if (step >= steps())
        throw Error("Sampler::shard: step " + std::to_string(step) + " of an epoch of " + std::to_string(steps()) +
                    " global batches");
    const std::size_t start = step * batch_, stop = std::min(n_, start + batch_);
    Shard s = dist::shard(stop - start, rank_, size_);
    s.begin += start;
    s.end += start;
    return s;
}

std::vector<std::size_t> Sampler::indices(std::size_t step) const
{
    const Shard s = shard(step);
    return {order_.begin() + static_cast<std::ptrdiff_t>(s.begin), order_.begin() + static_cast<std::ptrdiff_t>(s.end)};
}

template <class T>
void broadcast_parameters(nn::Module<T>& model, int root, MPI_Comm comm)
{
    broadcast_tensors<T>(parameter_values(model), root, comm, "broadcast_parameters");
}

template <class T>
DataParallel<T>::DataParallel(nn::Module<T>& model, nn::Optimizer<T>& optimizer, DataParallelOptions options,
                              MPI_Comm comm)
    : model_(model), optimizer_(optimizer), options_(options), comm_(comm)
{
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    rank_ = dist::rank(comm_);
    size_ = dist::size(comm_);
    params_ = model_.named_parameters();
    if (options_.bucket_bytes == 0) throw Error("DataParallel: bucket_bytes must be at least 1, got 0");
    if (options_.message_bytes < sizeof(T))
        throw Error("DataParallel: message_bytes must hold at least one element (" + std::to_string(sizeof(T)) +
                    " bytes), got " + std::to_string(options_.message_bytes));
    const auto& opt_params = optimizer_.parameters();
    bool same = opt_params.size() == params_.size();
    for (std::size_t i = 0; same && i < params_.size(); ++i) same = opt_params[i].second == params_[i].second;
    if (!same)
        throw Error("DataParallel: the optimiser must update exactly the model's parameters, in the model's order (" +
                    std::to_string(opt_params.size()) + " in the optimiser, " + std::to_string(params_.size()) +
                    " in the model)");

    broadcast_parameters(model_, 0, comm_);
    broadcast_tensors<T>(model_.named_buffers(), 0, comm_, "DataParallel");

    // Buckets in reverse parameter order: the sweep finishes the last layers first.
    const std::size_t n = params_.size();
    bucket_of_.assign(n, 0);
    offset_.assign(n, 0);
    packed_.assign(n, 0);
    // A bucket is closed once it holds bucket_bytes or more (a parameter larger than that gets
    // a bucket of its own, with the small ones recorded just before it).
    bool open = false;
    for (std::size_t k = n; k-- > 0;) {
        auto* p = params_[k].second;
        index_[p] = k;
        if (!open) buckets_.emplace_back();
        open = true;
        Bucket& bucket = buckets_.back();
        bucket_of_[k] = buckets_.size() - 1;
        offset_[k] = bucket.data.size();
        bucket.params.push_back(k);
        bucket.data.resize(bucket.data.size() + p->value().size());
        count_of(bucket.data.size(), "DataParallel");
        if (bucket.data.size() * sizeof(T) >= options_.bucket_bytes) open = false;
    }
    hook_ = [this](Parameter<T>& p) { on_ready(p); };
    reset_step();
}

template <class T>
DataParallel<T>::~DataParallel()
{
    // Requests still under way (an exception between backward and step) are completed, so that
    // MPI does not write into freed buffers.
    for (auto& b : buckets_)
        for (auto& r : b.requests)
            if (r != MPI_REQUEST_NULL) MPI_Wait(&r, MPI_STATUS_IGNORE);
}

template <class T>
void DataParallel<T>::reset_step()
{
    std::fill(packed_.begin(), packed_.end(), 0);
    for (auto& b : buckets_) {
        b.pending = b.params.size();
        b.started = false;
    }
    next_start_ = 0;
    swept_ = false;
    weight_ = 0;
}

template <class T>
void DataParallel<T>::pack(std::size_t k)
{
    Parameter<T>& p = *params_[k].second;
    if (p.grad.size() != p.value().size())
        throw Error("DataParallel: gradient of '" + params_[k].first + "' has shape " + shape_str(p.grad.shape()) +
                    " but the parameter has shape " + shape_str(p.value().shape()));
    T* dst = buckets_[bucket_of_[k]].data.data() + offset_[k];
    const T* src = p.grad.data();
    const std::size_t m = p.value().size();
    if (weight_ == T(0)) std::fill_n(dst, m, T(0));
    else
        for (std::size_t i = 0; i < m; ++i) dst[i] = weight_ * src[i];
    packed_[k] = 1;
    --buckets_[bucket_of_[k]].pending;
}

template <class T>
void DataParallel<T>::start_ready_buckets()
{
    while (next_start_ < buckets_.size() && buckets_[next_start_].pending == 0) {
        Bucket& b = buckets_[next_start_++];
        const std::size_t piece = std::max<std::size_t>(1, options_.message_bytes / sizeof(T));
        b.requests.clear();
        for (std::size_t at = 0; at < b.data.size(); at += piece) {
            b.requests.push_back(MPI_REQUEST_NULL);
            check_mpi(MPI_Iallreduce(MPI_IN_PLACE, b.data.data() + at,
                                     static_cast<int>(std::min(piece, b.data.size() - at)), mpi_type<T>(), MPI_SUM,
                                     comm_, &b.requests.back()),
                      "MPI_Iallreduce");
        }
        b.started = true;
    }
}

template <class T>
void DataParallel<T>::on_ready(Parameter<T>& p)
{
    const auto it = index_.find(&p);
    if (it == index_.end()) return;  // not one of the model's parameters
    pack(it->second);
    if (!options_.overlap) return;
    start_ready_buckets();
    // OpenMPI advances a non-blocking collective only inside MPI calls: test the ones under way.
    for (std::size_t i = 0; i < next_start_; ++i)
        for (auto& r : buckets_[i].requests)
            if (r != MPI_REQUEST_NULL) {
                int done = 0;
                check_mpi(MPI_Test(&r, &done, MPI_STATUS_IGNORE), "MPI_Test");
            }
}

template <class T>
void DataParallel<T>::backward(const Var<T>& loss, double weight)
{
    if (swept_)
        throw Error("DataParallel::backward: called twice without step() or synchronize() in between; "
                    "accumulate the loss and sweep once per step");
    if (!(weight >= 0 && weight <= 1))
        throw Error("DataParallel::backward: weight " + std::to_string(weight) +
                    " is outside [0, 1]; expected this rank's share n_r / N of the global batch (Shard::weight())");
    swept_ = true;
    weight_ = static_cast<T>(weight);
    ad::backward(loss, hook_);
}

template <class T>
void DataParallel<T>::synchronize()
{
    // Parameters the sweep did not reach (and every parameter of a rank without examples) add
    // their .grad as it stands, zero after zero_grad(), so that every bucket is sent.
    for (std::size_t k = 0; k < params_.size(); ++k)
        if (!packed_[k]) pack(k);
    start_ready_buckets();
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& b : buckets_)
        if (!b.requests.empty())
            check_mpi(MPI_Waitall(static_cast<int>(b.requests.size()), b.requests.data(), MPI_STATUSES_IGNORE),
                      "MPI_Waitall");
    wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (std::size_t k = 0; k < params_.size(); ++k) {
        Parameter<T>& p = *params_[k].second;
        const T* src = buckets_[bucket_of_[k]].data.data() + offset_[k];
        std::copy_n(src, p.value().size(), p.grad.data());
    }
    reset_step();
}

template <class T>
void DataParallel<T>::step()
{
    synchronize();
    optimizer_.step();
    if (options_.broadcast_buffers) broadcast_tensors<T>(model_.named_buffers(), 0, comm_, "DataParallel::step");
}

template <class T>
void DataParallel<T>::check_replicas() const
{
    std::vector<std::pair<std::string, const Tensor<T>*>> tensors;
    for (const auto& [name, p] : params_) tensors.emplace_back(name, &p->value());
    for (const auto& [name, t] : model_.named_buffers()) tensors.emplace_back(name + " (buffer)", t);
    std::vector<std::uint64_t> mine;
    for (const auto& [name, t] : tensors) mine.push_back(hash_of(*t));
    const std::size_t k = mine.size();
    std::vector<std::uint64_t> all(k * static_cast<std::size_t>(size_));
    check_mpi(MPI_Allgather(mine.data(), count_of(k, "check_replicas"), MPI_UINT64_T, all.data(),
                            count_of(k, "check_replicas"), MPI_UINT64_T, comm_),
              "MPI_Allgather");
    for (std::size_t i = 0; i < k; ++i) {
        std::vector<int> differ;
        for (int r = 1; r < size_; ++r)
            if (all[static_cast<std::size_t>(r) * k + i] != all[i]) differ.push_back(r);
        if (differ.empty()) continue;
        std::ostringstream msg;
        msg << "check_replicas: '" << tensors[i].first << "' differs from rank 0's on rank";
        if (differ.size() > 1) msg << 's';
        for (std::size_t j = 0; j < differ.size(); ++j) msg << (j ? ", " : " ") << differ[j];
        msg << " (of " << size_ << " ranks); the replicas have diverged";
        throw Error(msg.str());
    }
}

template <class T>
void save_checkpoint(DataParallel<T>& dp, const std::string& path)
{
    std::string error;
    if (dp.rank() == 0) {
        try {
            nn::save(dp.model(), dp.optimizer(), path);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!all_agree(error.empty(), dp.comm())) {
        if (dp.rank() == 0) throw Error("save_checkpoint: " + error);
        throw Error("save_checkpoint: rank 0 could not write " + path + " (its error names the cause)");
    }
}

template <class T>
void load_checkpoint(DataParallel<T>& dp, const std::string& path)
{
    std::string error;
    if (dp.rank() == 0) {
        try {
            nn::load(dp.model(), dp.optimizer(), path);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!all_agree(error.empty(), dp.comm())) {
        if (dp.rank() == 0) throw Error("load_checkpoint: " + error);
        throw Error("load_checkpoint: rank 0 could not load " + path + " (its error names the cause)");
    }
    const MPI_Comm comm = dp.comm();
    broadcast_parameters(dp.model(), 0, comm);
    broadcast_tensors<T>(dp.model().named_buffers(), 0, comm, "load_checkpoint");
    broadcast_tensors<T>(dp.optimizer().named_state(), 0, comm, "load_checkpoint");
    double scalars[2] = {static_cast<double>(dp.optimizer().step_count()), dp.optimizer().lr()};
    check_mpi(MPI_Bcast(scalars, 2, MPI_DOUBLE, 0, comm), "MPI_Bcast");
    dp.optimizer().set_step_count(static_cast<std::uint64_t>(scalars[0]));
    dp.optimizer().set_lr(scalars[1]);
}

template class DataParallel<float>;
template class DataParallel<double>;
template void save_checkpoint(DataParallel<float>&, const std::string&);
template void save_checkpoint(DataParallel<double>&, const std::string&);
template void load_checkpoint(DataParallel<float>&, const std::string&);
template void load_checkpoint(DataParallel<double>&, const std::string&);
template void broadcast_parameters(nn::Module<float>&, int, MPI_Comm);
template void broadcast_parameters(nn::Module<double>&, int, MPI_Comm);

}  // namespace ad::dist
