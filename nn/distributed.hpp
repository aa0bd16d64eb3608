// Data-parallel training over MPI (optional: built as autodiff::distributed when CMake finds MPI;
// the engine and nn/ do not depend on it).
//
// Every rank holds the whole model, takes its own part of each global batch (Shard, Sampler),
// computes the mean loss over its part and runs the reverse sweep. DataParallel averages the
// gradients across ranks before the optimiser step, so every rank takes the same step:
//
//   g = sum_r (n_r / N) g_r,
//
// where rank r holds n_r of the N examples of the global batch and g_r is the gradient of its mean
// loss. That is the gradient of the mean loss over the whole global batch: the single-process
// gradient, whether or not N divides evenly among the ranks.
//
// Gradients travel in buckets of about `bucket_bytes`, filled in reverse parameter order (the order
// in which the reverse sweep finishes them). The sweep's grad-ready hook (ad::backward(loss,
// on_grad_ready)) hands on each finished gradient, weighted by the rank's share n_r / N (the sweep
// starts from the weight instead of 1 when no parameter holds a gradient from before, as after
// zero_grad(); else the hook scales each whole gradient): a small one into its bucket's buffer, a
// large one (a quarter of message_bytes or more) where it is, in .grad, from which its allreduce
// sums into a buffer of the parameter's size that then becomes the .grad's storage (no copy in or
// out; an in-place sum would cost OpenMPI a copy of each message). The moment a bucket's last
// gradient arrives, non-blocking MPI_Iallreduces start on it while the sweep goes on through the
// earlier layers. step() waits for all of them, writes the small ones' sums back into .grad, swaps
// the large ones' storage with their sums, and runs the optimiser. Between backward() and step()
// (or synchronize()) the .grad of a large parameter holds this rank's weighted gradient and is
// being sent: read the average after synchronize(), and do not write it. After an exception from
// backward() it is not put back as it was (its sum may have been under way); the exception ends the
// job under run(). Buckets are started in bucket order on every rank (a bucket that is full early
// waits for the ones before it), so every rank issues the same collectives in the same order.
//
// Memory. OpenMPI allocates a scratch buffer of each message's size per allreduce and frees it at
// the end. So that every step reuses that memory instead of faulting it in afresh from the
// kernel, the first DataParallel of a process has glibc keep freed blocks below 32 MiB in the heap
// (mallopt: M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 64 MiB), unless the environment sets
// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or a glibc.malloc tunable in GLIBC_TUNABLES.
//
// Determinism. The same run twice gives the same bits: the buckets, the order of the collectives
// and OpenMPI's choice of algorithm (a function of message size and number of ranks) are the same.
// Parameters are identical on every rank when every rank receives the same sum. With 2 ranks that
// always holds: the sum is a + b on one rank and b + a on the other, and IEEE addition is
// commutative. With more ranks, an algorithm that combines partial sums in a different order on
// different ranks could round differently; OpenMPI's ring and recursive-doubling allreduce
// reduce each element along one path and hand the result on, but this is not promised by the MPI
// standard. check_replicas() verifies it (a hash of every parameter and buffer gathered from every
// rank); call it every few steps when running on more than 2 ranks.
//
// Faults. run() is the top level of an MPI program: it starts MPI, runs the training function and
// finishes MPI; an exception escaping the function on any rank prints
// "rank R of P: <what()>" to stderr and calls MPI_Abort, which ends every rank of the job (one rank
// waiting in a collective for a rank that died would otherwise hang forever).
//
// Agreement. Every collective call of this component (the constructor, each step(), finish(),
// check_replicas(), saving and loading, broadcast_parameters(), and a make_sampler Sampler's
// constructor and set_epoch())
// first states, in one small allreduce, which call this rank is in and the values every rank must
// share: the number of steps taken, the parameters' number and shapes, the sampler's data set size,
// batch, seed and epoch. When the ranks differ, every rank raises the same ad::Error naming each
// rank's call and values, e.g.
//   DataParallel::step: the ranks are in different calls: rank 0: in DataParallel::step after 3
//   steps; rank 1: finished after 3 steps (DataParallel::finish or its destructor); ...
// A step's statement goes out when backward() starts and its buckets only once every rank agreed
// (it takes about as long as the sweep's first layer, so the overlap is kept). The destructor calls
// finish() (unless an exception is unwinding), so a rank whose loop ends early is named by the
// others' next step. After a disagreement the DataParallel makes no more collective calls.
//
// Timeout. Every wait for the other ranks is bounded: after timeout() seconds without an answer
// (default 300; the environment variable AD_DIST_TIMEOUT, in seconds, or set_timeout() change it)
// the rank prints "<program>: rank R of P: <call>: no answer from every rank after T s ..." and
// calls MPI_Abort, which ends the job. This catches a rank that left without telling (it returned
// without destroying its DataParallel, is stuck, or waits in a collective of its own). The bound
// must exceed the longest time one rank may spend alone between two collective calls (an
// evaluation on rank 0 only, a slow data loader).
//
// Saving and loading. save() writes on rank 0 only (the others wait for it and learn whether it
// worked); load() reads on rank 0 and broadcasts the parameters, buffers and optimiser
// state, so every rank ends with the same values, even when only rank 0 sees the file.
#pragma once

#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/sampler.hpp"

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ad::dist {

// This process's rank and the number of ranks in `comm` (MPI must be initialised).
int rank(MPI_Comm comm = MPI_COMM_WORLD);
int size(MPI_Comm comm = MPI_COMM_WORLD);

// The longest wait, in seconds, of any collective call of this component for the other ranks
// before it ends the job (see Timeout above). Default 300, or AD_DIST_TIMEOUT when set; infinity
// waits forever. set_timeout throws ad::Error for a value that is not > 0.
double timeout();
void set_timeout(double seconds);

// The top level of a data-parallel program: MPI_Init_thread (funneled: only the main thread calls
// MPI), fn(), MPI_Finalize. An exception out of fn on any rank ends the whole job through
// MPI_Abort after printing "<program>: rank R of P: <what()>" to stderr; returns fn's result
// otherwise. Works without mpirun too (one rank).
int run(int argc, char** argv, const std::function<int()>& fn);

// Shard, shard() and Sampler are in nn/sampler.hpp (no MPI). The agreement of a Sampler across
// the ranks of `comm`, collective: it throws ad::Error on every rank, naming each rank's values,
// unless every rank has the same data set size, global batch, seed and `epoch`, and the
// sampler's rank and size are the process's own in `comm`.
void check_sampler(const Sampler& sampler, std::uint64_t epoch, MPI_Comm comm = MPI_COMM_WORLD);
// A Sampler whose constructor and set_epoch() are collective over `comm` when size > 1 (each runs
// check_sampler first); with size 1 they make no MPI call. size > 1 needs MPI initialised.
Sampler make_sampler(std::size_t n, std::size_t global_batch, std::uint64_t seed, int rank, int size,
                     MPI_Comm comm = MPI_COMM_WORLD);

struct DataParallelOptions {
    // A bucket closes once it holds this many bytes of gradient or more.
    std::size_t bucket_bytes = std::size_t(4) << 20;
    // A bucket goes out as allreduces of at most this many bytes each (fixed pieces, so the sums
    // are the same from run to run). OpenMPI 4.1 on this machine takes 0.74 ms for 2 MiB and
    // 21 ms for 3 MiB (it changes algorithm), so large buckets and parameters are cut up.
    std::size_t message_bytes = std::size_t(1) << 20;
    // Start each bucket's allreduce from the sweep (true), or all of them after the sweep, inside
    // step() (false: the same sums, for measuring what the overlap hides).
    bool overlap = true;
    // Broadcast the buffers (BatchNorm's running statistics) from rank 0 at every step, so that
    // they stay identical on every rank.
    bool broadcast_buffers = true;
};

template <class T>
class DataParallel {
public:
    // Broadcasts every parameter and buffer from rank 0, so every rank starts from rank 0's model.
    // Collective: every rank of comm must construct it with the same model and optimiser layout;
    // ranks whose parameters or buffers differ in number or shape, or whose element types differ,
    // get an ad::Error naming the first difference and the ranks, e.g. "parameter 2 ('1.weight')
    // has shape [8, 8] on rank 0 and [9, 8] on rank 1".
    DataParallel(nn::Module<T>& model, nn::Optimizer<T>& optimizer, DataParallelOptions options = {},
                 MPI_Comm comm = MPI_COMM_WORLD);
    // finish(), unless an exception is unwinding or finish() or a disagreement came first; if the
    // other ranks disagree, prints their difference and ends the job (MPI_Abort).
    ~DataParallel();
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    // The reverse sweep from this rank's mean loss, with weight = n_r / N (Shard::weight()).
    // Starts each bucket's allreduce as soon as its gradients are final. At most once per step.
    void backward(const Var<T>& loss, double weight);
    // Waits for every bucket and writes the averaged gradients into .grad, without stepping (for
    // clipping the averaged gradient first). A rank with no examples in this global batch calls
    // step() (or this) without backward(): it contributes zeros and receives the average.
    void synchronize();
    // synchronize(), then the optimiser's step; with broadcast_buffers, rank 0's buffers.
    void step();
    void zero_grad() { optimizer_.zero_grad(); }
    void zero_grad(FillZeros) { optimizer_.zero_grad(fill_zeros); }
    // Collective: training ends on every rank. Throws ad::Error on every rank, naming the ranks and
    // their step counts, when another rank is still taking steps (or in another call). step()
    // after finish() is refused.
    void finish();
    // Steps taken: synchronize() and step() calls completed.
    std::uint64_t steps() const { return steps_; }

    // Throws ad::Error on every rank, naming the first parameter or buffer and the ranks whose
    // values differ, unless every rank holds the same bits. Collective.
    void check_replicas() const;

    int rank() const { return rank_; }
    int size() const { return size_; }
    MPI_Comm comm() const { return comm_; }
    std::size_t buckets() const { return buckets_.size(); }
    nn::Module<T>& model() { return model_; }
    nn::Optimizer<T>& optimizer() { return optimizer_; }

    // Seconds the last step() spent waiting for allreduces still under way (what the overlap did
    // not hide).
    double last_wait_seconds() const { return wait_seconds_; }

private:
    struct Bucket {
        std::vector<std::size_t> params;  // indices into params_, in the order they are packed
        std::vector<T> data;              // the small gradients, packed (the large ones stay in .grad)
        std::size_t pending = 0;          // gradients not yet copied in this step
        std::vector<MPI_Request> requests;  // one per piece of at most message_bytes
        bool started = false;
    };
    void on_ready(Parameter<T>& p);
    void pack(std::size_t param);
    void begin_step();
    bool step_agreed();
    void start_ready_buckets();
    void reset_step();
    // Every rank states `call` with its step count; a disagreement throws (see Agreement).
    void agree(std::uint64_t call, const char* who) const;
    void check_usable(const char* who) const;

    template <class U>
    friend void save(DataParallel<U>& dp, const std::string& path);
    template <class U>
    friend void load(DataParallel<U>& dp, const std::string& path);

    nn::Module<T>& model_;
    nn::Optimizer<T>& optimizer_;
    DataParallelOptions options_;
    MPI_Comm comm_;
    int rank_ = 0, size_ = 1;
    std::vector<std::pair<std::string, Parameter<T>*>> params_;
    std::unordered_map<const Parameter<T>*, std::size_t> index_;
    std::vector<std::size_t> bucket_of_, offset_;  // per parameter
    std::vector<char> direct_;                     // per parameter: sent from its own .grad
    // Per large parameter, where its sum arrives; step() swaps it with the .grad's storage.
    std::vector<typename Tensor<T>::storage_type> sums_;
    std::vector<char> packed_;                     // per parameter, this step
    std::vector<Bucket> buckets_;
    std::size_t next_start_ = 0;                   // first bucket not yet started
    bool swept_ = false;                           // backward() ran since the last step
    T weight_ = 0;
    bool weighted_ = false;  // this step's sweep started from weight_: its gradients are weighted
    Tensor<T> seed_;         // the sweep's start, weight_ in the loss's shape
    double wait_seconds_ = 0;
    std::function<void(Parameter<T>&)> hook_;
    std::uint64_t steps_ = 0;
    // This step's statement (see Agreement), reduced in place while the sweep runs.
    std::vector<std::uint64_t> statement_;
    MPI_Request statement_request_ = MPI_REQUEST_NULL;
    bool statement_sent_ = false, agreed_ = false;
    bool finished_ = false;
    mutable bool broken_ = false;  // the ranks disagreed: no more collective calls
    int uncaught_ = 0;             // exceptions in flight at construction
};

// Collective nn::save and nn::load (nn/serialize.hpp's format). save writes on rank 0 only
// and raises the same error on every rank if rank 0 fails. load reads on rank 0, and
// every rank ends with rank 0's parameters, buffers and optimiser state (step count and learning
// rate included); an error on rank 0 is raised on every rank, and no rank's model changes.
template <class T>
void save(DataParallel<T>& dp, const std::string& path);
template <class T>
void load(DataParallel<T>& dp, const std::string& path);

// Every parameter of the model sent from rank `root` to every rank (the constructor does this).
template <class T>
void broadcast_parameters(nn::Module<T>& model, int root = 0, MPI_Comm comm = MPI_COMM_WORLD);

extern template class DataParallel<float>;
extern template class DataParallel<double>;

}  // namespace ad::dist
