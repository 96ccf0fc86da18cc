// The executor: a program's steps over chunks of images, on one or more threads.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "program.h"

namespace lowbit {
namespace engine {
namespace detail {

namespace {

// Spins before sleeping: a step of one image lasts tens of microseconds to milliseconds, and a
// condition variable's wake-up costs tens of microseconds.
constexpr int kSpins = 1 << 14;

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

Team::Team(int size) : size_(std::max(1, size)) {
  for (int p = 1; p < size_; ++p) {
    threads_.emplace_back([this, p] {
      int64_t seen = 0;
      for (;;) {
        for (int spin = 0; spin < kSpins && generation_.load(std::memory_order_acquire) == seen &&
                           !stop_.load(std::memory_order_acquire);
             ++spin)
          pause();
        if (generation_.load(std::memory_order_acquire) == seen) {
          std::unique_lock<std::mutex> lock(mu_);
          wake_.wait(lock, [&] {
            return stop_.load(std::memory_order_acquire) ||
                   generation_.load(std::memory_order_acquire) != seen;
          });
        }
        if (stop_.load(std::memory_order_acquire)) return;
        seen = generation_.load(std::memory_order_acquire);
        try {
          (*task_)(p);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu_);
          if (!error_) error_ = std::current_exception();
        }
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mu_);
          done_.notify_one();
        }
      }
    });
  }
}

Team::~Team() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void Team::run(const std::function<void(int)>& f) {
  task_ = &f;
  error_ = nullptr;
  pending_.store(size_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  std::exception_ptr mine;
  try {
    f(0);
  } catch (...) {
    mine = std::current_exception();
  }
  for (int spin = 0; spin < kSpins && pending_.load(std::memory_order_acquire) != 0; ++spin)
    pause();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  if (mine) std::rethrow_exception(mine);
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
}

// Runs the graph over `batch` images in chunks of a few images, so that every activation of a
// chunk stays in cache and the buffers, allocated once per call, are reused. With `seconds`, adds
// each step's time to seconds[step]; with a team, the steps that can be split (Step::part) and are
// large enough run on all its threads.
void Program::run(const float* inputs, int64_t batch, float* const* outs, double* seconds,
                  Team* team) const {
  using Clock = std::chrono::steady_clock;
  constexpr int64_t kChunk = 8;
  // Below this many multiply-adds a step runs on one thread: waking the others costs more.
  constexpr int64_t kSplitMacs = int64_t{1} << 17;
  const int64_t in_per = product(input_dims);
  std::vector<int64_t> out_per;
  for (const auto& d : output_dims) out_per.push_back(product(d));
  std::unique_ptr<Workspace> workspace = acquire_workspace();
  Workspace& buffers = *workspace;
  std::vector<const float*> ptr(values.size(), nullptr);
  std::vector<const float*> xs;
  for (int64_t first = 0; first < batch; first += kChunk) {
    const int64_t n = std::min(kChunk, batch - first);
    ptr[input] = inputs + first * in_per;
    for (size_t k = 0; k < steps.size(); ++k) {
      const Step& s = steps[k];
      xs.clear();
      for (int i : s.inputs) xs.push_back(ptr[i]);
      const int64_t count = n * values[s.output].storage_per_image();
      float* y;
      if (const int o = output_of[s.output]; o >= 0) {
        y = outs[o] + first * out_per[o];
      } else {
        auto& buffer = buffers[slot_of[s.output]];
        if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(count);
        y = buffer.data();
      }
      const auto start = seconds ? Clock::now() : Clock::time_point();
      if (team && team->size() > 1 && s.part && s.macs * n >= kSplitMacs) {
        const int64_t parts = team->size();
        team->run([&](int p) { s.part(xs, y, count, p, parts); });
      } else {
        s.run(xs, y, count);
      }
      if (seconds) seconds[k] += std::chrono::duration<double>(Clock::now() - start).count();
      ptr[s.output] = y;
    }
    for (size_t o = 0; o < outputs.size(); ++o)
      if (ptr[outputs[o]] != outs[o] + first * out_per[o])
        bad(origin, "graph output '" + output_names[o] + "' is not computed by the graph");
  }
  release_workspace(std::move(workspace));
}

void Program::plan_memory() {
  std::vector<size_t> last(values.size(), 0);  // the last step reading each value
  for (size_t k = 0; k < steps.size(); ++k)
    for (int i : steps[k].inputs) last[i] = std::max(last[i], k);
  slot_of.assign(values.size(), -1);
  output_of.assign(values.size(), -1);
  for (size_t o = 0; o < outputs.size(); ++o) output_of[outputs[o]] = static_cast<int>(o);
  std::vector<int> free_slots;
  std::vector<std::vector<int>> ends(steps.size());  // values whose last reader is step k
  for (size_t k = 0; k < steps.size(); ++k) {
    const int v = steps[k].output;
    if (output_of[v] < 0 && slot_of[v] < 0) {
      if (free_slots.empty()) {
        slot_of[v] = static_cast<int>(slot_floats.size());
        slot_floats.push_back(0);
      } else {
        slot_of[v] = free_slots.back();
        free_slots.pop_back();
      }
      slot_floats[slot_of[v]] = std::max(slot_floats[slot_of[v]], values[v].storage_per_image());
      // A value no step reads keeps its slot to the end (it was computed for nothing).
      if (last[v] > k) ends[last[v]].push_back(v);
    }
    for (int e : ends[k]) free_slots.push_back(slot_of[e]);  // free once step k has run
  }
}

std::unique_ptr<Program::Workspace> Program::acquire_workspace() const {
  {
    std::lock_guard<std::mutex> lock(workspaces_mu);
    if (!workspaces.empty()) {
      auto w = std::move(workspaces.back());
      workspaces.pop_back();
      return w;
    }
  }
  return std::make_unique<Workspace>(slot_floats.size());
}

std::unique_ptr<Team> Program::acquire_team(int size) const {
  {
    std::lock_guard<std::mutex> lock(workspaces_mu);
    for (auto it = teams.begin(); it != teams.end(); ++it) {
      if ((*it)->size() == size) {
        auto team = std::move(*it);
        teams.erase(it);
        return team;
      }
    }
  }
  return std::make_unique<Team>(size);
}

void Program::release_team(std::unique_ptr<Team> team) const {
  std::lock_guard<std::mutex> lock(workspaces_mu);
  teams.push_back(std::move(team));
}

void Program::release_workspace(std::unique_ptr<Workspace> w) const {
  std::lock_guard<std::mutex> lock(workspaces_mu);
  workspaces.push_back(std::move(w));
}

}  // namespace detail

using detail::bad;
using detail::product;

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

std::vector<int64_t> Model::input_shape() const { return impl_->input_dims; }
size_t Model::output_count() const { return impl_->outputs.size(); }

namespace {
size_t checked_output(size_t k, size_t count) {
  if (k >= count)
    throw std::invalid_argument("output " + std::to_string(k) + ": the model has " +
                                std::to_string(count) + " output" + (count == 1 ? "" : "s"));
  return k;
}
}  // namespace

std::vector<int64_t> Model::output_shape(size_t k) const {
  return impl_->output_dims[checked_output(k, output_count())];
}
int64_t Model::input_size() const { return product(impl_->input_dims); }
int64_t Model::output_size(size_t k) const { return product(output_shape(k)); }
const std::string& Model::output_name(size_t k) const {
  return impl_->output_names[checked_output(k, output_count())];
}
const std::vector<PlannedNode>& Model::plan() const { return impl_->plan; }
int64_t Model::parameter_bytes() const {
  int64_t total = 0;
  for (const auto& p : impl_->plan) total += p.parameter_bytes;
  return total;
}

namespace {
// One output buffer: for the models of one output only.
std::vector<float*> the_one_output(const Model& m, float* outputs) {
  if (m.output_count() != 1)
    throw std::invalid_argument("run: the model has " + std::to_string(m.output_count()) +
                                " outputs: give one buffer per output");
  return {outputs};
}
}  // namespace

void Model::run(const float* inputs, int64_t batch, float* outputs, int threads) const {
  run(inputs, batch, the_one_output(*this, outputs), threads);
}

void Model::run(const float* inputs, int64_t batch, const std::vector<float*>& outputs,
                int threads) const {
  if (batch < 0) throw std::invalid_argument("run: batch must be >= 0");
  if (outputs.size() != output_count())
    throw std::invalid_argument("run: " + std::to_string(outputs.size()) +
                                " output buffers for a model of " + std::to_string(output_count()) +
                                " outputs");
  if (batch == 0) return;
  if (!inputs || std::find(outputs.begin(), outputs.end(), nullptr) != outputs.end())
    throw std::invalid_argument("run: inputs and outputs must not be null");
  const int64_t in_per = input_size();
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, batch));
  if (workers == 1) {
    // One image (or fewer than the threads): the threads split each large step of the images.
    if (threads > 1) {
      auto team = impl_->acquire_team(static_cast<int>(std::min<int64_t>(threads, 256)));
      impl_->run(inputs, batch, outputs.data(), nullptr, team.get());
      impl_->release_team(std::move(team));
    } else {
      impl_->run(inputs, batch, outputs.data());
    }
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(workers);
  const int64_t per = (batch + workers - 1) / workers;
  for (int64_t t = 0; t < workers; ++t) {
    const int64_t first = t * per, n = std::min(per, batch - first);
    if (n <= 0) break;
    pool.emplace_back([&, t, first, n] {
      try {
        std::vector<float*> outs(outputs.size());
        for (size_t o = 0; o < outs.size(); ++o) outs[o] = outputs[o] + first * output_size(o);
        impl_->run(inputs + first * in_per, n, outs.data());
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

void Model::run_profiled(const float* inputs, int64_t batch, float* outputs,
                         std::vector<double>& seconds) const {
  run_profiled(inputs, batch, the_one_output(*this, outputs), seconds);
}

void Model::run_profiled(const float* inputs, int64_t batch, const std::vector<float*>& outputs,
                         std::vector<double>& seconds) const {
  if (batch < 0) throw std::invalid_argument("run: batch must be >= 0");
  if (outputs.size() != output_count())
    throw std::invalid_argument("run: " + std::to_string(outputs.size()) +
                                " output buffers for a model of " + std::to_string(output_count()) +
                                " outputs");
  if (batch > 0 && (!inputs || std::find(outputs.begin(), outputs.end(), nullptr) != outputs.end()))
    throw std::invalid_argument("run: inputs and outputs must not be null");
  seconds.resize(impl_->steps.size(), 0.0);
  if (batch > 0) impl_->run(inputs, batch, outputs.data(), seconds.data());
}

}  // namespace engine
}  // namespace lowbit
