// Learning-rate schedules as pure functions of the step: nothing to checkpoint, nothing to
// drift on resume.
#pragma once

#include <cstdint>

#include "losatok/train/train_config.h"

namespace losatok::train {

// The factor multiplying the base lr for the optimizer step with index `step` (0-based):
// warm-up (step + 1) / warmup_steps for the first warmup_steps steps, then
//  - cosine: min + (1 - min) (1 + cos(pi p)) / 2,
//  - linear: min + (1 - min) (1 - p),
//  - constant: 1,
// where p = (step - warmup) / (decay_end - warmup) clamped to [0, 1] and decay_end is
// `decay_steps`, or `max_steps` when that is 0.
double lr_factor(const ScheduleConfig& s, int64_t step, int64_t max_steps);

}  // namespace losatok::train
