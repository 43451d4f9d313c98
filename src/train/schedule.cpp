// Warm-up + cosine / linear / constant learning-rate factors.
#include "losatok/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace losatok::train {

double lr_factor(const ScheduleConfig& s, int64_t step, int64_t max_steps) {
  if (step < s.warmup_steps) return static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  if (s.kind == "constant") return 1.0;
  const int64_t end = s.decay_steps > 0 ? s.decay_steps : max_steps;
  const int64_t span = end - s.warmup_steps;
  const double p = span <= 0 ? 1.0 : std::clamp(static_cast<double>(step - s.warmup_steps) / span, 0.0, 1.0);
  const double m = s.min_lr_ratio;
  if (s.kind == "linear") return m + (1 - m) * (1 - p);
  return m + (1 - m) * 0.5 * (1 + std::cos(M_PI * p));
}

}  // namespace losatok::train
