// Data-parallel training over MPI: see distributed.hpp for what holds and why.
#include "nn/distributed.hpp"

#include "autodiff/backward.hpp"
#include "nn/serialize.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

std::string g_program = "ad::dist";  // run() sets the program's name

// OpenMPI's non-blocking allreduce allocates a scratch buffer of its message's size on every call
// and frees it when the sum is done. glibc gives a freed block of 128 KiB or more back to the
// kernel (munmap, or trimming the heap), so each step faulted the same megabytes in afresh: on
// two ranks of bench d, 2.4 ms of a 43 ms step. Blocks below 32 MiB now come from the heap and up
// to 64 MiB of free heap is kept, so the next step reuses them. A user's own choice in the
// environment (MALLOC_*_ or GLIBC_TUNABLES) is left as it is.
void keep_freed_memory()
{
#if defined(__GLIBC__)
    static std::once_flag once;
    std::call_once(once, [] {
        const char* tunables = std::getenv("GLIBC_TUNABLES");
        if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") ||
            (tunables && std::strstr(tunables, "glibc.malloc.")))
            return;
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
    });
#endif
}

[[noreturn]] void abort_job(MPI_Comm comm, const std::string& what)
{
    int r = 0, s = 1;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &s);
    std::fflush(stdout);
    std::fprintf(stderr, "%s: rank %d of %d: %s\n", g_program.c_str(), r, s, what.c_str());
    std::fflush(stderr);
    MPI_Abort(comm, 1);
    std::_Exit(1);  // MPI_Abort does not return; this is for an MPI that would
}

double timeout_from_environment()
{
    const char* text = std::getenv("AD_DIST_TIMEOUT");
    if (!text) return 300;
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(v > 0))
        throw Error(std::string("AD_DIST_TIMEOUT: expected a number of seconds > 0, got '") + text + "'");
    return v;
}

double& timeout_seconds()
{
    static double seconds = timeout_from_environment();
    return seconds;
}

// Waits for n requests, at most timeout() seconds; then ends the job, naming who() waited. (A
// request still under way cannot be abandoned: MPI would write into its buffer later.)
template <class Who>
void wait_for(MPI_Request* requests, int n, MPI_Comm comm, const Who& who)
{
    int done = 0;
    check_mpi(MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done) return;
    const double limit = timeout();
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        std::this_thread::yield();  // ranks may share cores
        check_mpi(MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (done) return;
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > limit) {
            std::ostringstream msg;
            msg << who() << ": no answer from every rank after " << waited
                << " s (the timeout: ad::dist::set_timeout or AD_DIST_TIMEOUT); a rank has left the job's "
                   "sequence of collective calls: it may have returned early without destroying its "
                   "DataParallel, be stuck, or wait in another collective";
            abort_job(comm, msg.str());
        }
    }
}

template <class Who>
void wait_for(MPI_Request& request, MPI_Comm comm, const Who& who)
{
    wait_for(&request, 1, comm, who);
}

auto named(const char* who)
{
    return [who] { return std::string(who); };
}

// Whether every rank says ok: a check that fails on one rank must stop every rank before the
// next collective, or the others would wait for it forever.
bool all_agree(bool ok, MPI_Comm comm, const char* who)
{
    int all = ok ? 1 : 0;
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, comm, &request), "MPI_Iallreduce");
    wait_for(request, comm, named(who));
    return all == 1;
}

// Agreement (distributed.hpp): a statement is the call a rank is in and the values every rank
// must share. One allreduce of (v, ~v) under MPI_MAX gives the largest and the smallest of each.
enum Call : std::uint64_t {
    call_data_parallel = 1,
    call_step,
    call_finish,
    call_check_replicas,
    call_save,
    call_load,
    call_broadcast,
    call_sampler,
};
constexpr std::size_t kFields = 7;  // the call and up to six values
using Statement = std::array<std::uint64_t, kFields>;

void fold(const Statement& s, std::uint64_t* out)
{
    for (std::size_t i = 0; i < kFields; ++i) {
        out[i] = s[i];
        out[kFields + i] = ~s[i];
    }
}

bool agreed(const std::uint64_t* reduced)
{
    for (std::size_t i = 0; i < kFields; ++i)
        if (reduced[i] != ~reduced[kFields + i]) return false;
    return true;
}

void start_statement(const Statement& s, std::uint64_t* buffer, MPI_Comm comm, MPI_Request* request)
{
    fold(s, buffer);
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, buffer, int(2 * kFields), MPI_UINT64_T, MPI_MAX, comm, request),
              "MPI_Iallreduce");
}

// Every rank's statement (after a disagreement, which every rank saw alike).
std::vector<Statement> gather_statements(const Statement& mine, MPI_Comm comm, const char* who)
{
    std::vector<Statement> all(static_cast<std::size_t>(size(comm)));
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallgather(mine.data(), int(kFields), MPI_UINT64_T, all.data(), int(kFields), MPI_UINT64_T, comm,
                             &request),
              "MPI_Iallgather");
    wait_for(request, comm, named(who));
    return all;
}

// Every rank's string.
std::vector<std::string> gather_strings(const std::string& mine, MPI_Comm comm, const char* who)
{
    const auto P = static_cast<std::size_t>(size(comm));
    std::vector<int> lengths(P), offsets(P);
    int length = count_of(mine.size(), who);
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm, &request), "MPI_Iallgather");
    wait_for(request, comm, named(who));
    std::size_t total = 0;
    for (std::size_t r = 0; r < P; ++r) {
        offsets[r] = count_of(total, who);
        total += static_cast<std::size_t>(lengths[r]);
    }
    std::string all(total, '\0');
    check_mpi(MPI_Iallgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                              comm, &request),
              "MPI_Iallgatherv");
    wait_for(request, comm, named(who));
    std::vector<std::string> out;
    for (std::size_t r = 0; r < P; ++r)
        out.push_back(all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(lengths[r])));
    return out;
}

std::string ranks_text(const std::vector<int>& ranks)
{
    std::string s = ranks.size() > 1 ? "ranks " : "rank ";
    for (std::size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s;
}

// The names of a call's values in messages; null for values that are not shown (shape hashes).
const char* field_name(std::uint64_t call, std::size_t field)
{
    static const std::map<std::uint64_t, std::array<const char*, kFields - 1>> names = {
        {call_data_parallel, {"parameters", nullptr, "buffers", nullptr, "bytes per element", nullptr}},
        {call_step, {"steps taken"}},
        {call_finish, {"steps taken"}},
        {call_check_replicas, {"steps taken"}},
        {call_save, {"steps taken"}},
        {call_load, {"steps taken"}},
        {call_broadcast, {"tensors", nullptr}},
        {call_sampler, {"data set size", "global batch", "seed", "epoch", "ranks",
                        "rank argument equal to the MPI rank (1 yes, 0 no)"}},
    };
    const auto it = names.find(call);
    return it == names.end() ? nullptr : it->second[field - 1];
}

std::string describe(const Statement& s)
{
    const std::string steps = std::to_string(s[1]) + (s[1] == 1 ? " step" : " steps");
    switch (s[0]) {
    case call_data_parallel: return "constructing a DataParallel";
    case call_step: return "in DataParallel::step after " + steps;
    case call_finish: return "finished after " + steps + " (DataParallel::finish or its destructor)";
    case call_check_replicas: return "in check_replicas after " + steps;
    case call_save: return "in save after " + steps;
    case call_load: return "in load after " + steps;
    case call_broadcast: return "broadcasting " + std::to_string(s[1]) + " tensors";
    case call_sampler:
        return "constructing a Sampler or in Sampler::set_epoch (data set size " + std::to_string(s[1]) +
               ", global batch " + std::to_string(s[2]) + ", seed " + std::to_string(s[3]) + ", epoch " +
               std::to_string(s[4]) + ")";
    default: return "in a collective call that is not this component's";
    }
}

// The same text on every rank: each rank's call, or the values that differ and who has which.
std::string disagreement(const std::vector<Statement>& all, const char* who)
{
    std::ostringstream msg;
    msg << who;
    bool same_call = true;
    for (const auto& s : all) same_call = same_call && s[0] == all[0][0];
    if (!same_call) {
        msg << ": the ranks are in different calls:";
        std::vector<std::pair<std::string, std::vector<int>>> groups;
        for (std::size_t r = 0; r < all.size(); ++r) {
            const std::string d = describe(all[r]);
            auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == d; });
            if (it == groups.end()) groups.push_back({d, {int(r)}});
            else it->second.push_back(int(r));
        }
        for (std::size_t g = 0; g < groups.size(); ++g)
            msg << (g ? "; " : " ") << ranks_text(groups[g].second) << ": " << groups[g].first;
        msg << "; every rank must make the same calls in the same order (as many steps on every rank: "
               "data sets of the same size)";
        return msg.str();
    }
    msg << ": the ranks disagree:";
    bool first = true;
    for (std::size_t f = 1; f < kFields; ++f) {
        const char* name = field_name(all[0][0], f);
        std::vector<std::pair<std::uint64_t, std::vector<int>>> groups;
        for (std::size_t r = 0; r < all.size(); ++r) {
            auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == all[r][f]; });
            if (it == groups.end()) groups.push_back({all[r][f], {int(r)}});
            else it->second.push_back(int(r));
        }
        if (groups.size() < 2 || !name) continue;
        msg << (first ? " " : "; ") << name << ":";
        first = false;
        for (std::size_t g = 0; g < groups.size(); ++g)
            msg << (g ? "," : "") << " " << groups[g].first << " on " << ranks_text(groups[g].second);
    }
    if (all[0][0] == call_sampler && !first)
        msg << " (every rank must pass the same values: with different ones the ranks' parts of each global "
               "batch overlap)";
    return msg.str();
}

// Every rank states `mine`; throws the same ad::Error on every rank when they differ. `detail`
// (collective too) adds to the message when the ranks are in the same call.
template <class Detail>
void agree(const Statement& mine, MPI_Comm comm, const char* who, const Detail& detail)
{
    timeout();  // a malformed AD_DIST_TIMEOUT is an error at the first call, not at the first long wait
    std::uint64_t reduced[2 * kFields];
    MPI_Request request = MPI_REQUEST_NULL;
    start_statement(mine, reduced, comm, &request);
    wait_for(request, comm, named(who));
    if (agreed(reduced)) return;
    const auto all = gather_statements(mine, comm, who);
    std::string msg = disagreement(all, who);
    bool same_call = true;
    for (const auto& s : all) same_call = same_call && s[0] == mine[0];
    if (same_call) {
        const std::string more = detail();
        if (!more.empty()) msg += (msg.back() == ':' ? " " : "; ") + more;
    }
    throw Error(msg);
}

void agree(const Statement& mine, MPI_Comm comm, const char* who)
{
    agree(mine, comm, who, [] { return std::string(); });
}

// Names and shapes of tensors, and a hash of the shapes (names may differ between ranks: the
// broadcast needs only the shapes to match).
struct Listing {
    std::vector<std::string> names, shapes;
};

template <class Tensors>
Listing listing_of(const Tensors& tensors)
{
    Listing l;
    for (const auto& [name, t] : tensors) {
        l.names.push_back(name);
        l.shapes.push_back(shape_str(t->shape()));
    }
    return l;
}

std::uint64_t hash_of(const Listing& l)
{
    std::uint64_t h = 1469598103934665603ull;
    for (const auto& s : l.shapes)
        for (const char c : s + ";") {
            h ^= static_cast<unsigned char>(c);
            h *= 1099511628211ull;
        }
    return h;
}

// The first tensor whose shape differs from rank 0's on the first rank that differs. Collective.
std::string first_difference(const Listing& mine, const char* kind, MPI_Comm comm, const char* who)
{
    std::string encoded;
    for (std::size_t i = 0; i < mine.names.size(); ++i) encoded += mine.names[i] + '\t' + mine.shapes[i] + '\n';
    const auto all = gather_strings(encoded, comm, who);
    std::vector<Listing> lists(all.size());
    for (std::size_t r = 0; r < all.size(); ++r) {
        std::istringstream in(all[r]);
        std::string line;
        while (std::getline(in, line)) {
            const auto tab = line.find('\t');
            lists[r].names.push_back(line.substr(0, tab));
            lists[r].shapes.push_back(line.substr(tab + 1));
        }
    }
    const Listing& zero = lists[0];
    for (std::size_t r = 1; r < lists.size(); ++r) {
        const Listing& other = lists[r];
        const std::string rank = "rank " + std::to_string(r);
        const std::size_t n = std::min(zero.shapes.size(), other.shapes.size());
        std::string msg;
        if (zero.shapes.size() != other.shapes.size())
            msg = "rank 0 has " + std::to_string(zero.shapes.size()) + " " + kind + "s, " + rank + " has " +
                  std::to_string(other.shapes.size()) + "; ";
        for (std::size_t i = 0; i < n; ++i)
            if (zero.shapes[i] != other.shapes[i]) {
                msg += kind + std::string(" ") + std::to_string(i) + " ('" + zero.names[i] + "') has shape " +
                       zero.shapes[i] + " on rank 0 and " + other.shapes[i] + " on " + rank;
                if (other.names[i] != zero.names[i]) msg += " (named '" + other.names[i] + "' there)";
                return msg;
            }
        if (zero.shapes.size() != other.shapes.size()) {
            const bool longer = other.shapes.size() > n;
            const Listing& l = longer ? other : zero;
            return msg + kind + " " + std::to_string(n) + " ('" + l.names[n] + "' " + l.shapes[n] + ") is on " +
                   (longer ? rank : std::string("rank 0")) + " only";
        }
    }
    return {};
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

// Sends every tensor from root. With `check`, the ranks first agree on the tensors' number and
// shapes (an error on every rank naming the first difference rather than a hang or a truncated
// message); without, the caller has checked them.
template <class T>
void broadcast_tensors(const std::vector<std::pair<std::string, Tensor<T>*>>& tensors, int root, MPI_Comm comm,
                       const char* who, bool check = true)
{
    if (check) {
        const Listing mine = listing_of(tensors);
        agree(Statement{call_broadcast, mine.shapes.size(), hash_of(mine)}, comm, who,
              [&] { return first_difference(mine, "tensor", comm, who); });
    }
    std::vector<MPI_Request> requests;
    requests.reserve(tensors.size());
    for (const auto& [name, t] : tensors) {
        requests.push_back(MPI_REQUEST_NULL);
        check_mpi(MPI_Ibcast(t->data(), count_of(t->size(), who), mpi_type<T>(), root, comm, &requests.back()),
                  "MPI_Ibcast");
    }
    wait_for(requests.data(), count_of(requests.size(), who), comm, named(who));
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

double timeout() { return timeout_seconds(); }

void set_timeout(double seconds)
{
    if (!(seconds > 0)) {
        std::ostringstream msg;
        msg << "set_timeout: " << seconds << " seconds; expected a number > 0 (infinity: no limit)";
        throw Error(msg.str());
    }
    timeout_seconds() = seconds;
}

int run(int argc, char** argv, const std::function<int()>& fn)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::string program = argc > 0 && argv[0] ? argv[0] : "program";
    if (const auto slash = program.rfind('/'); slash != std::string::npos) program = program.substr(slash + 1);
    g_program = program;
    auto fail = [&](const std::string& what) { abort_job(MPI_COMM_WORLD, what); };
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

void check_sampler(const Sampler& sampler, std::uint64_t epoch, MPI_Comm comm)
{
    const int mpi_rank = dist::rank(comm), mpi_size = dist::size(comm);
    const int rank = sampler.rank(), size = sampler.size();
    const Statement mine{call_sampler, sampler.examples(), sampler.global_batch(), sampler.seed(), epoch,
                         static_cast<std::uint64_t>(size), rank == mpi_rank ? 1u : 0u};
    agree(mine, comm, "Sampler");
    // The ranks agree: each check below fails on every rank alike.
    if (size != mpi_size)
        throw Error("Sampler: " + std::to_string(size) + " ranks given, but the communicator has " +
                    std::to_string(mpi_size));
    if (rank != mpi_rank)
        throw Error("Sampler: rank " + std::to_string(rank) + " given on the process of rank " +
                    std::to_string(mpi_rank) + " in the communicator; expected its own rank");
}

Sampler make_sampler(std::size_t n, std::size_t global_batch, std::uint64_t seed, int rank, int size, MPI_Comm comm)
{
    if (size <= 1) return Sampler(n, global_batch, seed, rank, size);
    dist::shard(global_batch, rank, size);  // checks rank and size before MPI is asked anything
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised)
        throw Error("Sampler: " + std::to_string(size) +
                    " ranks need MPI, which is not initialised (ad::dist::run or MPI_Init first)");
    return Sampler(n, global_batch, seed, rank, size,
                   [comm](const Sampler& s, std::uint64_t epoch) { check_sampler(s, epoch, comm); });
}

template <class T>
void broadcast_parameters(nn::Module<T>& model, int root, MPI_Comm comm)
{
    broadcast_tensors<T>(parameter_values(model), root, comm, "broadcast_parameters");
}

template <class T>
void DataParallel<T>::check_usable(const char* who) const
{
    if (broken_)
        throw Error(std::string(who) + ": the ranks disagreed earlier (see that error); this DataParallel makes "
                                       "no more collective calls");
}

template <class T>
void DataParallel<T>::agree(std::uint64_t call, const char* who) const
{
    check_usable(who);
    try {
        dist::agree(Statement{call, steps_}, comm_, who);
    } catch (const Error&) {
        broken_ = true;
        throw;
    }
}

template <class T>
DataParallel<T>::DataParallel(nn::Module<T>& model, nn::Optimizer<T>& optimizer, DataParallelOptions options,
                              MPI_Comm comm)
    : model_(model), optimizer_(optimizer), options_(options), comm_(comm)
{
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    keep_freed_memory();
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

    // Every rank's model must have the same parameters and buffers (shapes, and element type).
    {
        const Listing params = listing_of(parameter_values(model_)), buffers = listing_of(model_.named_buffers());
        const Statement mine{call_data_parallel, params.shapes.size(), hash_of(params), buffers.shapes.size(),
                             hash_of(buffers), sizeof(T)};
        dist::agree(mine, comm_, "DataParallel", [&] {
            std::string detail = first_difference(params, "parameter", comm_, "DataParallel");
            if (detail.empty()) detail = first_difference(buffers, "buffer", comm_, "DataParallel");
            return detail;
        });
    }
    broadcast_tensors<T>(parameter_values(model_), 0, comm_, "DataParallel", false);
    for (auto* p : model_.parameters()) p->mark_modified();
    broadcast_tensors<T>(model_.named_buffers(), 0, comm_, "DataParallel", false);
    statement_.assign(2 * kFields, 0);
    uncaught_ = std::uncaught_exceptions();

    // Buckets in reverse parameter order: the sweep finishes the last layers first.
    const std::size_t n = params_.size();
    bucket_of_.assign(n, 0);
    offset_.assign(n, 0);
    direct_.assign(n, 0);
    packed_.assign(n, 0);
    sums_.resize(n);
    // A bucket is closed once it holds bucket_bytes or more (a parameter larger than that gets
    // a bucket of its own, with the small ones recorded just before it). A gradient of a quarter
    // message or more travels in its own pieces anyway: it is sent from where it is.
    bool open = false;
    std::size_t bytes = 0;  // of every gradient in the open bucket
    for (std::size_t k = n; k-- > 0;) {
        auto* p = params_[k].second;
        index_[p] = k;
        if (!open) {
            buckets_.emplace_back();
            bytes = 0;
        }
        open = true;
        Bucket& bucket = buckets_.back();
        bucket_of_[k] = buckets_.size() - 1;
        bucket.params.push_back(k);
        const std::size_t size = p->value().size();
        if (size * sizeof(T) >= options_.message_bytes / 4) {
            direct_[k] = 1;
            sums_[k].resize(size);
        } else {
            offset_[k] = bucket.data.size();
            bucket.data.resize(bucket.data.size() + size);
            count_of(bucket.data.size(), "DataParallel");
        }
        bytes += size * sizeof(T);
        if (bytes >= options_.bucket_bytes) open = false;
    }
    hook_ = [this](Parameter<T>& p) { on_ready(p); };
    reset_step();
}

template <class T>
DataParallel<T>::~DataParallel()
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    try {
        // Requests still under way (an exception between backward and step) are completed, so that
        // MPI does not write into freed buffers.
        const bool mid_step = statement_sent_ || swept_;
        wait_for(statement_request_, comm_, named("~DataParallel"));
        for (auto& b : buckets_)
            if (!b.requests.empty())
                wait_for(b.requests.data(), static_cast<int>(b.requests.size()), comm_, named("~DataParallel"));
        // Unwinding: the exception ends the job (dist::run); a collective call now could only hide it.
        if (!finished_ && !broken_ && !mid_step && std::uncaught_exceptions() <= uncaught_) finish();
    } catch (const std::exception& e) {
        abort_job(comm_, e.what());
    }
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
    weighted_ = false;
    statement_sent_ = false;
    agreed_ = false;
}

template <class T>
void DataParallel<T>::begin_step()
{
    if (statement_sent_) return;
    check_usable("DataParallel::step");
    if (finished_) throw Error("DataParallel::step: called after finish()");
    start_statement(Statement{call_step, steps_}, statement_.data(), comm_, &statement_request_);
    statement_sent_ = true;
}

// Whether every rank has stated this step (without waiting).
template <class T>
bool DataParallel<T>::step_agreed()
{
    if (agreed_) return true;
    if (!statement_sent_) return false;
    int done = 0;
    check_mpi(MPI_Test(&statement_request_, &done, MPI_STATUS_IGNORE), "MPI_Test");
    agreed_ = done && agreed(statement_.data());
    return agreed_;
}

template <class T>
void DataParallel<T>::finish()
{
    if (finished_) return;
    if (statement_sent_ || swept_)
        throw Error("DataParallel::finish: called between backward() and step(); finish after the last step");
    finished_ = true;
    agree(call_finish, "DataParallel::finish");
}

template <class T>
void DataParallel<T>::pack(std::size_t k)
{
    Parameter<T>& p = *params_[k].second;
    if (p.grad.size() != 0 && !p.has_grad())
        throw Error("DataParallel: gradient of '" + params_[k].first + "' has shape " + shape_str(p.grad.shape()) +
                    " but the parameter has shape " + shape_str(p.value().shape()));
    const std::size_t m = p.value().size();
    if (direct_[k]) {
        T* g = p.grad_or_zeros().data();
        if (weight_ == T(0)) std::fill_n(g, m, T(0));
        else if (!weighted_)
            for (std::size_t i = 0; i < m; ++i) g[i] = weight_ * g[i];
    } else {
        T* dst = buckets_[bucket_of_[k]].data.data() + offset_[k];
        const T* src = p.grad.data();
        if (weight_ == T(0) || !p.has_grad()) std::fill_n(dst, m, T(0));
        else if (weighted_) std::copy_n(src, m, dst);
        else
            for (std::size_t i = 0; i < m; ++i) dst[i] = weight_ * src[i];
    }
    packed_[k] = 1;
    --buckets_[bucket_of_[k]].pending;
}

template <class T>
void DataParallel<T>::start_ready_buckets()
{
    // No gradient goes out before every rank is known to be in this step.
    if (!step_agreed()) return;
    while (next_start_ < buckets_.size() && buckets_[next_start_].pending == 0) {
        Bucket& b = buckets_[next_start_++];
        const std::size_t piece = std::max<std::size_t>(1, options_.message_bytes / sizeof(T));
        b.requests.clear();
        auto sum = [&](const T* from, T* to, std::size_t size) {
            for (std::size_t at = 0; at < size; at += piece) {
                b.requests.push_back(MPI_REQUEST_NULL);
                check_mpi(MPI_Iallreduce(from == to ? MPI_IN_PLACE : from + at, to + at,
                                         static_cast<int>(std::min(piece, size - at)), mpi_type<T>(), MPI_SUM,
                                         comm_, &b.requests.back()),
                          "MPI_Iallreduce");
            }
        };
        sum(b.data.data(), b.data.data(), b.data.size());
        for (std::size_t k : b.params)
            if (direct_[k]) sum(params_[k].second->grad.data(), sums_[k].data(), sums_[k].size());
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
    begin_step();
    swept_ = true;
    weight_ = static_cast<T>(weight);
    // When no parameter holds a gradient yet (zero_grad() before the step, the usual loop), the
    // sweep starts from the weight instead of 1 and every gradient comes out weighted: no pass
    // over them in the hook. A gradient accumulated before is weighted whole by the hook instead.
    weighted_ = weight_ != T(0) && loss.size() == 1 &&
                std::none_of(params_.begin(), params_.end(), [](const auto& p) { return p.second->has_grad(); });
    if (weighted_) {
        if (!equal_shapes(seed_.shape(), loss.shape())) seed_.resize(loss.shape());
        seed_.fill(weight_);
        ad::backward(loss, seed_, hook_);
    } else {
        ad::backward(loss, hook_);
    }
}

template <class T>
void DataParallel<T>::synchronize()
{
    // Parameters the sweep did not reach (and every parameter of a rank without examples) add
    // their .grad as it stands, zeros if they have none, so that every bucket is sent.
    begin_step();
    for (std::size_t k = 0; k < params_.size(); ++k)
        if (!packed_[k]) pack(k);
    const auto t0 = std::chrono::steady_clock::now();
    const auto who = [this] { return "DataParallel::step (step " + std::to_string(steps_ + 1) + ")"; };
    wait_for(statement_request_, comm_, who);
    if (!step_agreed()) {
        broken_ = true;  // no bucket went out on any rank: nothing is left under way
        reset_step();
        const Statement mine{call_step, steps_};
        throw Error(disagreement(gather_statements(mine, comm_, "DataParallel::step"), "DataParallel::step"));
    }
    start_ready_buckets();
    for (auto& b : buckets_)
        if (!b.requests.empty()) wait_for(b.requests.data(), static_cast<int>(b.requests.size()), comm_, who);
    wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (std::size_t k = 0; k < params_.size(); ++k) {
        Parameter<T>& p = *params_[k].second;
        if (direct_[k]) {
            p.grad.storage().swap(sums_[k]);  // the sum becomes .grad; the old buffer takes the next sum
            continue;
        }
        const T* src = buckets_[bucket_of_[k]].data.data() + offset_[k];
        std::copy_n(src, p.value().size(), p.grad_or_zeros().data());
    }
    reset_step();
    ++steps_;
}

template <class T>
void DataParallel<T>::step()
{
    synchronize();
    optimizer_.step();
    // The buffers' shapes were agreed at construction.
    if (options_.broadcast_buffers)
        broadcast_tensors<T>(model_.named_buffers(), 0, comm_, "DataParallel::step", false);
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
    agree(call_check_replicas, "check_replicas");
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallgather(mine.data(), count_of(k, "check_replicas"), MPI_UINT64_T, all.data(),
                             count_of(k, "check_replicas"), MPI_UINT64_T, comm_, &request),
              "MPI_Iallgather");
    wait_for(request, comm_, named("check_replicas"));
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
void save(DataParallel<T>& dp, const std::string& path)
{
    dp.agree(call_save, "save");
    std::string error;
    if (dp.rank() == 0) {
        try {
            nn::save(dp.model(), dp.optimizer(), path);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!all_agree(error.empty(), dp.comm(), "save")) {
        if (dp.rank() == 0) throw Error("save: " + error);
        throw Error("save: rank 0 could not write " + path + " (its error names the cause)");
    }
}

template <class T>
void load(DataParallel<T>& dp, const std::string& path)
{
    dp.agree(call_load, "load");
    std::string error;
    if (dp.rank() == 0) {
        try {
            nn::load(dp.model(), dp.optimizer(), path);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!all_agree(error.empty(), dp.comm(), "load")) {
        if (dp.rank() == 0) throw Error("load: " + error);
        throw Error("load: rank 0 could not load " + path + " (its error names the cause)");
    }
    const MPI_Comm comm = dp.comm();
    broadcast_parameters(dp.model(), 0, comm);
    broadcast_tensors<T>(dp.model().named_buffers(), 0, comm, "load");
    broadcast_tensors<T>(dp.optimizer().named_state(), 0, comm, "load");
    double scalars[2] = {static_cast<double>(dp.optimizer().step_count()), dp.optimizer().lr()};
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Ibcast(scalars, 2, MPI_DOUBLE, 0, comm, &request), "MPI_Ibcast");
    wait_for(request, comm, named("load"));
    dp.optimizer().set_step_count(static_cast<std::uint64_t>(scalars[0]));
    dp.optimizer().set_lr(scalars[1]);
}

template class DataParallel<float>;
template class DataParallel<double>;
template void save(DataParallel<float>&, const std::string&);
template void save(DataParallel<double>&, const std::string&);
template void load(DataParallel<float>&, const std::string&);
template void load(DataParallel<double>&, const std::string&);
template void broadcast_parameters(nn::Module<float>&, int, MPI_Comm);
template void broadcast_parameters(nn::Module<double>&, int, MPI_Comm);

}  // namespace ad::dist
