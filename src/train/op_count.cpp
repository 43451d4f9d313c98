// Per-phase counts of the ATen operations a step dispatches (RecordFunction callbacks).
#include "losatok/train/op_count.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "losatok/core/error.h"

namespace losatok::train {

namespace {

std::atomic<int> g_phase{static_cast<int>(OpPhase::kOther)};
std::atomic<bool> g_active{false};
using Tally = std::array<std::atomic<int64_t>, static_cast<std::size_t>(OpPhase::kCount)>;
Tally g_work{}, g_views{};
std::mutex g_mutex;  // the name tallies and the view cache
std::array<std::unordered_map<std::string, int64_t>, static_cast<std::size_t>(OpPhase::kCount)> g_names;
std::unordered_map<std::string, bool> g_is_view;

// Per thread: nesting, and the top-level operation in progress.
thread_local int t_depth = 0;
thread_local int t_phase = 0;
thread_local bool t_work = false;  // the top-level operation (or one inside it) computes
thread_local const char* t_name = nullptr;

// Whether an operation's schema says every output aliases an input without writing it (view,
// transpose, reshape, detach, to, contiguous, ...): metadata only, unless it falls back to a
// copy, which then shows as a computing operation inside it.
// -1: a record without a schema (some internal ones): it decides nothing inside another.
int may_only_alias(const at::RecordFunction& fn) {
  const auto op = fn.operator_name();
  if (!op) return -1;
  const std::lock_guard<std::mutex> lock(g_mutex);
  const std::string key = op->name + "." + op->overload_name;
  const auto it = g_is_view.find(key);
  if (it != g_is_view.end()) return it->second;
  bool view = false;
  if (const auto handle = c10::Dispatcher::singleton().findSchema(*op)) {
    const auto& returns = handle->schema().returns();
    view = !returns.empty();
    for (const auto& r : returns) {
      const c10::AliasInfo* alias = r.alias_info();
      if (alias && alias->containedTypes().size() == 1 && alias->beforeSets().empty())
        alias = &alias->containedTypes().front();  // Tensor(a)[]
      if (!alias || alias->isWrite() || alias->beforeSets().empty()) view = false;
    }
  }
  g_is_view.emplace(key, view);
  return view;
}

// Marks the records that entered an operation (autograd's per-node records do not: the
// operations a backward node dispatches are what it costs).
struct Entered : at::ObserverContext {};

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  const char* name = fn.name();
  if (std::strncmp(name, "autograd::", 10) == 0) return nullptr;
  const int view = may_only_alias(fn);
  if (t_depth++ == 0) {
    t_phase = g_phase.load(std::memory_order_relaxed);
    t_work = view != 1;
    t_name = name;
  } else if (view == 0) {
    t_work = true;
  }
  return std::make_unique<Entered>();
}

void on_end(const at::RecordFunction&, at::ObserverContext* entered) {
  if (!entered || --t_depth != 0) return;
  const auto phase = static_cast<std::size_t>(t_phase);
  if (!t_work) {
    g_views[phase]++;
    return;
  }
  g_work[phase]++;
  const std::lock_guard<std::mutex> lock(g_mutex);
  g_names[phase][t_name]++;
}

}  // namespace

const char* op_phase_name(OpPhase phase) {
  switch (phase) {
    case OpPhase::kForward: return "forward";
    case OpPhase::kBackward: return "backward";
    case OpPhase::kOptimizer: return "optimizer";
    case OpPhase::kClipping: return "clipping";
    case OpPhase::kEma: return "ema";
    case OpPhase::kScaler: return "scaler";
    case OpPhase::kGradSync: return "grad_sync";
    case OpPhase::kOther: return "other";
    case OpPhase::kCount: break;
  }
  return "?";
}

OpPhaseScope::OpPhaseScope(OpPhase phase)
    : previous_(static_cast<OpPhase>(g_phase.exchange(static_cast<int>(phase)))) {}

OpPhaseScope::~OpPhaseScope() {
  g_phase.store(static_cast<int>(previous_));
}

OpCounter::OpCounter() {
  if (g_active.exchange(true)) throw Error("op counter: only one can count at a time");
  reset();
  handle_ = at::addGlobalCallback(
      at::RecordFunctionCallback(&on_start, &on_end).scopes({at::RecordScope::FUNCTION}));
}

OpCounter::~OpCounter() {
  at::removeCallback(handle_);
  g_active.store(false);
}

OpCounts OpCounter::counts() const {
  OpCounts out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = g_work[i].load();
  return out;
}

OpCounts OpCounter::view_counts() const {
  OpCounts out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = g_views[i].load();
  return out;
}

std::vector<std::pair<std::string, int64_t>> OpCounter::top(OpPhase phase, std::size_t n) const {
  std::vector<std::pair<std::string, int64_t>> out;
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    const auto& names = g_names[static_cast<std::size_t>(phase)];
    out.assign(names.begin(), names.end());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (out.size() > n) out.resize(n);
  return out;
}

void OpCounter::reset() {
  for (auto& c : g_work) c.store(0);
  for (auto& c : g_views) c.store(0);
  const std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& names : g_names) names.clear();
}

int64_t OpCounter::total(const OpCounts& c) {
  int64_t t = 0;
  for (int64_t v : c) t += v;
  return t;
}

}  // namespace losatok::train
