"""Timing shared by the PyTorch-eager step benchmarks (sembo_step.py, dit_step.py), printed in
the layout of `losatok bench`."""
import time


def time_steps(step, warmup, steps):
    """Runs `step` warmup + steps times; the timed durations, sorted."""
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)


def report(title, times, batch, audio_seconds=None):
    mean = sum(times) / len(times)
    print(title)
    print(f"  step      mean {mean:.4f} s  median {times[len(times) // 2]:.4f} s  min {times[0]:.4f} s")
    print(f"  steps/s   {1 / mean:.3f}\n  samples/s {batch / mean:.2f}")
    if audio_seconds is not None:
        print(f"  audio-s/s {audio_seconds / mean:.2f}")
