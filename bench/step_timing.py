"""Timing and operation counts shared by the PyTorch-eager step benchmarks (sembo_step.py,
dit_step.py), printed in the layout of `losatok bench`."""
import collections
import contextlib
import time

import torch

PHASES = ("forward", "backward", "optimizer", "clipping", "ema", "scaler", "grad_sync", "other")


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


@contextlib.contextmanager
def phase(name):
    """Marks a phase of the step for count_ops (a profiler range)."""
    with torch.autograd.profiler.record_function("phase::" + name):
        yield


_views = {}


def _only_aliases(name):
    """Whether every output of the operator `name` aliases an input without writing it (the
    schema says so), as `losatok bench --count-ops` decides."""
    if name not in _views:
        view = False
        if name.startswith("aten::"):
            packet = getattr(torch.ops.aten, name[len("aten::"):], None)
            if packet is not None:
                schema = getattr(packet, packet.overloads()[0])._schema
                view = bool(schema.returns) and all(
                    r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
        _views[name] = view
    return _views[name]


def count_ops(step):
    """One step under the profiler: top-level computing ATen operations per phase (what autograd's
    backward nodes dispatch counts as backward; view/alias operations apart unless something
    inside them computes), as `losatok bench --count-ops` counts them."""
    with torch.autograd.profiler.profile() as prof:
        step()
    work, views, names = collections.Counter(), collections.Counter(), collections.Counter()

    def computes(event):  # records without an ATen schema decide nothing themselves
        own = event.name.startswith("aten::") and not _only_aliases(event.name)
        return own or any(computes(c) for c in event.cpu_children)

    def visit(event, ph):
        if event.name.startswith("phase::"):
            ph = event.name[len("phase::"):]
        elif event.name.startswith("aten::"):
            if computes(event):
                work[ph] += 1
                names[(ph, event.name)] += 1
            else:
                views[ph] += 1
            return
        for c in event.cpu_children:
            visit(c, ph)

    for event in prof.function_events:
        if event.cpu_parent is None:
            visit(event, "other")
    total = sum(work.values())
    print(f"  ATen ops per step {total} (and {sum(views.values())} view/alias ops): "
          + " ".join(f"{p} {work[p]}" for p in PHASES))
    for p in PHASES:
        top = sorted(((n, c) for (q, n), c in names.items() if q == p), key=lambda x: -x[1])[:6]
        if top:
            print(f"    {p:<10} " + " ".join(f"{n} {c}" for n, c in top))
    return total


def adamw(groups, lr, betas, per_tensor):
    """The fastest AdamW a PyTorch user has here: fused (>= 2.4, or CUDA), else foreach; the
    per-parameter loop when asked."""
    kw = {}
    if not per_tensor:
        major, minor = (int(x) for x in torch.__version__.split(".")[:2])
        kw = {"fused": True} if (major, minor) >= (2, 4) else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **kw)


def clip(params, max_norm, per_tensor):
    params = [p for p in params if p.grad is not None]
    if per_tensor or not hasattr(torch, "_foreach_norm"):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params]
    total = torch.stack(torch._foreach_norm(grads, 2)).norm(2)
    torch._foreach_mul_(grads, float((max_norm / (total + 1e-6)).clamp(max=1.0)))
    return total


def ema_update(shadow, params, decay, per_tensor):
    if per_tensor:
        for s, p in zip(shadow, params):
            s.lerp_(p, 1 - decay)
    else:
        torch._foreach_mul_(shadow, decay)
        torch._foreach_add_(shadow, params, alpha=1 - decay)
