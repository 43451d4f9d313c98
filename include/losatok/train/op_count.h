// Counting the ATen operations a training step dispatches, by phase of the step: the host-side
// cost of a step on a GPU is about one kernel launch per operation, so this count is what the
// GPU step's speed hangs on when the model is small or the batch short.
//
// Only top-level operations are counted (the ones our code and autograd's backward nodes
// dispatch; an operation that dispatches others inside counts once). Operations whose schema
// only aliases their input (views, transposes, detach, a `to` that changes nothing) are counted
// apart, unless something inside them computes (a reshape that copies). Operations of every
// thread count, under the phase set last (a data loader's workers would too: `bench` runs none). The phase is
// process-wide, so backward passes that autograd runs on its device threads count under the phase that
// started them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace losatok::train {

enum class OpPhase : int {
  kForward = 0,
  kBackward,
  kOptimizer,
  kClipping,
  kEma,
  kScaler,
  kGradSync,
  kOther,
  kCount
};

const char* op_phase_name(OpPhase phase);

// Sets the phase for the current scope (and restores the previous one). Cheap when no counter
// is running: one atomic store.
class OpPhaseScope {
 public:
  explicit OpPhaseScope(OpPhase phase);
  ~OpPhaseScope();
  OpPhaseScope(const OpPhaseScope&) = delete;
  OpPhaseScope& operator=(const OpPhaseScope&) = delete;

 private:
  OpPhase previous_;
};

using OpCounts = std::array<int64_t, static_cast<std::size_t>(OpPhase::kCount)>;

// Counts while it lives (one at a time in a process). Installs a RecordFunction callback.
class OpCounter {
 public:
  OpCounter();
  ~OpCounter();
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;

  // Operations that compute (launch a kernel on a GPU), since construction or the last reset.
  OpCounts counts() const;
  // Operations that only make a view or alias (view, transpose, reshape, detach, a `to` that
  // changes nothing): no kernel, a few microseconds of host time each.
  OpCounts view_counts() const;
  // The most frequent operation names of a phase, most frequent first.
  std::vector<std::pair<std::string, int64_t>> top(OpPhase phase, std::size_t n) const;
  void reset();
  static int64_t total(const OpCounts& c);

 private:
  uint64_t handle_;
};

}  // namespace losatok::train
