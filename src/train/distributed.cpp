// c10d process groups, the launcher environment and the bucketed gradient all-reduce.
#include "losatok/train/distributed.h"

#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef LOSATOK_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"

extern char** environ;

namespace losatok::train {

namespace {

// `text` (part of environment variable `name`) as an integer.
int to_int(const std::string& name, const std::string& text) {
  try {
    std::size_t used = 0;
    const int v = std::stoi(text, &used);
    if (used != text.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    throw Error("environment variable " + name + "='" + text + "' is not an integer");
  }
}

int parse_int(const std::map<std::string, std::string>& vars, const std::string& name, int fallback) {
  const auto it = vars.find(name);
  return it == vars.end() || it->second.empty() ? fallback : to_int(name, it->second);
}

std::string get(const std::map<std::string, std::string>& vars, const std::string& name,
                const std::string& fallback = "") {
  const auto it = vars.find(name);
  return it == vars.end() || it->second.empty() ? fallback : it->second;
}

c10d::ReduceOp reduce_op(const std::string& op) {
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "max") return c10d::ReduceOp::MAX;
  if (op == "min") return c10d::ReduceOp::MIN;
  throw Error("all_reduce: unknown op '" + op + "' (sum, max, min)");
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // Hosts are separated by commas outside brackets; a bracket holds ranges of one prefix.
  std::string first;
  int depth = 0;
  for (char c : nodelist) {
    if (c == ',' && depth == 0) break;
    if (c == '[') ++depth;
    if (c == ']') --depth;
    first += c;
  }
  const auto open = first.find('[');
  if (open == std::string::npos) return first;
  const auto close = first.find(']', open);
  if (close == std::string::npos) throw Error("SLURM_JOB_NODELIST '" + nodelist + "' has an unclosed '['");
  std::string inner = first.substr(open + 1, close - open - 1);
  inner = inner.substr(0, inner.find(','));
  inner = inner.substr(0, inner.find('-'));
  return first.substr(0, open) + inner + first.substr(close + 1);
}

namespace {

// Tasks of this step on this node: SLURM_NTASKS_PER_NODE when uniform, else this node's entry
// (SLURM_NODEID) of SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE ("2(x3),1").
int slurm_tasks_on_node(const std::map<std::string, std::string>& vars) {
  if (vars.count("SLURM_NTASKS_PER_NODE")) return parse_int(vars, "SLURM_NTASKS_PER_NODE", 1);
  const std::string name =
      vars.count("SLURM_STEP_TASKS_PER_NODE") ? "SLURM_STEP_TASKS_PER_NODE" : "SLURM_TASKS_PER_NODE";
  const std::string list = get(vars, name);
  if (list.empty()) return 1;
  const int node = parse_int(vars, "SLURM_NODEID", 0);
  int seen = 0;
  for (std::size_t start = 0; start < list.size();) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, end - start);
    const auto paren = item.find("(x");
    const int count = to_int(name, item.substr(0, paren));
    const int repeat =
        paren == std::string::npos ? 1 : to_int(name, item.substr(paren + 2, item.size() - paren - 3));
    if (node < seen + repeat) return count;
    seen += repeat;
    start = end + 1;
  }
  throw Error("environment variable " + name + "='" + list +
              "' has no entry for SLURM_NODEID=" + std::to_string(node));
}

}  // namespace

DistributedEnv DistributedEnv::from_variables(const std::map<std::string, std::string>& vars) {
  DistributedEnv e;
  const bool torchrun = vars.count("WORLD_SIZE") && vars.count("RANK");
  const bool slurm = !torchrun && vars.count("SLURM_NTASKS") && vars.count("SLURM_PROCID");
  if (torchrun) {
    e.launcher = "torchrun";
    e.world_size = parse_int(vars, "WORLD_SIZE", 1);
    e.rank = parse_int(vars, "RANK", 0);
    e.local_rank = parse_int(vars, "LOCAL_RANK", e.rank);
    e.local_world_size = parse_int(vars, "LOCAL_WORLD_SIZE", e.world_size);
    const std::string agent = get(vars, "TORCHELASTIC_USE_AGENT_STORE");
    e.agent_store = agent == "True" || agent == "true" || agent == "1";
  } else if (slurm) {
    e.launcher = "slurm";
    e.world_size = parse_int(vars, "SLURM_NTASKS", 1);
    e.rank = parse_int(vars, "SLURM_PROCID", 0);
    e.local_rank = parse_int(vars, "SLURM_LOCALID", 0);
    e.local_world_size = slurm_tasks_on_node(vars);
    // The step's first node hosts rank 0.
    const std::string nodes =
        get(vars, "SLURM_STEP_NODELIST", get(vars, "SLURM_JOB_NODELIST", get(vars, "SLURM_NODELIST")));
    if (!nodes.empty()) e.master_addr = first_slurm_host(nodes);
    // Jobs sharing a node must not share a port.
    if (vars.count("SLURM_JOB_ID")) e.master_port = 20000 + parse_int(vars, "SLURM_JOB_ID", 0) % 20000;
  } else {
    return e;
  }
  e.master_addr = get(vars, "MASTER_ADDR", e.master_addr);
  e.master_port = parse_int(vars, "MASTER_PORT", e.master_port);
  const std::string who = torchrun ? "WORLD_SIZE" : "SLURM_NTASKS";
  if (e.world_size < 1) throw Error("environment variable " + who + " must be >= 1");
  if (e.rank < 0 || e.rank >= e.world_size)
    throw Error("environment: rank " + std::to_string(e.rank) + " is outside the world size " +
                std::to_string(e.world_size) + " (" + who + ")");
  if (e.local_rank < 0 || e.local_world_size < 1 || e.local_rank >= e.local_world_size)
    throw Error("environment: local rank " + std::to_string(e.local_rank) +
                " is outside the local world size " + std::to_string(e.local_world_size));
  if (e.master_port < 1 || e.master_port > 65535)
    throw Error("environment variable MASTER_PORT=" + std::to_string(e.master_port) + " is not a TCP port");
  return e;
}

DistributedEnv DistributedEnv::from_environment() {
  std::map<std::string, std::string> vars;
  for (char** p = environ; p && *p; ++p) {
    const std::string kv = *p;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return from_variables(vars);
}

// ---------------------------------------------------------------------------------------------

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::ProcessGroupBase> pg;       // the tensors of the group's device
  c10::intrusive_ptr<compat::ProcessGroupBase> control;  // CPU tensors: Gloo (the same as pg on CPU)
};

struct ProcessGroup::Pending {
  decltype(std::declval<compat::ProcessGroupBase&>().allreduce(
      std::declval<std::vector<at::Tensor>&>())) work;
  std::vector<at::Tensor> tensors;
};

namespace {

c10::intrusive_ptr<compat::ProcessGroupBase> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                       int size, const std::string& host,
                                                       std::chrono::seconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout));
  // GLOO_SOCKET_IFNAME picks the interface as in PyTorch; a job on one machine stays on loopback.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (host == "127.0.0.1" || host == "localhost")
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
}

}  // namespace

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl, int rank, int world_size, std::string backend,
                           torch::Device device)
    : impl_(std::move(impl)),
      rank_(rank),
      world_size_(world_size),
      backend_(std::move(backend)),
      device_(device) {}

ProcessGroup::~ProcessGroup() = default;

std::unique_ptr<ProcessGroup> ProcessGroup::connect(const DistributedEnv& env, const torch::Device& device,
                                                    const std::string& backend,
                                                    std::chrono::seconds timeout) {
  if (backend != "auto" && backend != "gloo" && backend != "nccl")
    throw Error("train.distributed.backend must be auto, gloo or nccl, got '" + backend + "'");
#ifdef LOSATOK_WITH_NCCL
  const bool nccl = backend == "nccl" || (backend == "auto" && device.is_cuda());
#else
  if (backend == "nccl")
    throw Error("train.distributed.backend nccl: this build has no NCCL (build against a CUDA LibTorch)");
  const bool nccl = false;
#endif
  if (nccl && !device.is_cuda()) throw Error("train.distributed.backend nccl needs a CUDA device");
  auto impl = std::make_unique<Impl>();
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env.master_port);
  so.isServer = env.rank == 0 && !env.agent_store;
  so.numWorkers = env.world_size;
  so.waitWorkers = !env.agent_store;
  so.timeout = std::chrono::milliseconds(timeout);
  spdlog::info("distributed: rank {}/{} (local {}/{}, {}), store {}:{}{}", env.rank, env.world_size,
               env.local_rank, env.local_world_size, env.launcher, env.master_addr, env.master_port,
               env.agent_store ? " (torchrun agent's)" : "");
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    if (env.agent_store) {
      // torchrun keys each restart's rendezvous by attempt, as torch.distributed does.
      const char* attempt = std::getenv("TORCHELASTIC_RESTART_COUNT");
      impl->store = c10::make_intrusive<c10d::PrefixStore>(
          std::string("/worker/attempt_") + (attempt ? attempt : "0"), impl->store);
    }
    const auto base = impl->store;
    impl->store = c10::make_intrusive<c10d::PrefixStore>("losatok/", base);
    // Flags, metrics and random states travel on the CPU over Gloo, so reading them never waits
    // for the GPU's queue.
    impl->control = make_gloo(c10::make_intrusive<c10d::PrefixStore>("losatok-cpu/", base), env.rank,
                              env.world_size, env.master_addr, timeout);
    if (nccl) {
#ifdef LOSATOK_WITH_NCCL
      c10::cuda::set_device(device.index());
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = std::chrono::milliseconds(timeout);
      impl->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, env.rank, env.world_size, opts);
#endif
    } else {
      impl->pg = impl->control;
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    throw Error("distributed rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) +
                " (rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                ") failed: " + what);
  }
  const torch::Device comm_device = nccl ? device : torch::Device(torch::kCPU);
  auto group = std::unique_ptr<ProcessGroup>(
      new ProcessGroup(std::move(impl), env.rank, env.world_size, nccl ? "nccl" : "gloo", comm_device));
  group->barrier();  // every rank is here before the first real collective
  return group;
}

std::unique_ptr<ProcessGroup> ProcessGroup::connect_file(const std::string& store_path, int rank,
                                                         int world_size, std::chrono::seconds timeout) {
  auto impl = std::make_unique<Impl>();
  impl->store = c10::make_intrusive<c10d::FileStore>(store_path, world_size);
  impl->pg = make_gloo(impl->store, rank, world_size, "127.0.0.1", timeout);
  impl->control = impl->pg;
  return std::unique_ptr<ProcessGroup>(
      new ProcessGroup(std::move(impl), rank, world_size, "gloo", torch::kCPU));
}

namespace {

// The group for `t` and the tensor to hand it: device tensors over the main backend, the rest
// as contiguous CPU tensors over Gloo.
std::pair<compat::ProcessGroupBase*, at::Tensor> route(const ProcessGroup::Impl& impl,
                                                       const torch::Device& device, const at::Tensor& t) {
  if (!device.is_cpu() && t.device() == device)
    return {impl.pg.get(), t.is_contiguous() ? t : t.contiguous()};
  return {impl.control.get(), t.is_cpu() && t.is_contiguous() ? t : t.cpu().contiguous()};
}

}  // namespace

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& t : tensors) {
    auto [group, x] = route(*impl_, device_, t);
    std::vector<at::Tensor> one{x};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    group->broadcast(one, o)->wait();
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

void ProcessGroup::all_reduce(torch::Tensor& tensor, const std::string& op) {
  auto [group, x] = route(*impl_, device_, tensor);
  std::vector<at::Tensor> one{x};
  c10d::AllreduceOptions o;
  o.reduceOp = reduce_op(op);
  group->allreduce(one, o)->wait();
  if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
}

std::vector<torch::Tensor> ProcessGroup::all_gather(const torch::Tensor& tensor) {
  std::vector<at::Tensor> input{tensor.cpu().contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < world_size_; ++r) output[0].push_back(torch::empty_like(input[0]));
  impl_->control->allgather(output, input)->wait();
  return output[0];
}

void ProcessGroup::barrier() {
  impl_->control->barrier()->wait();
}

std::shared_ptr<ProcessGroup::Pending> ProcessGroup::all_reduce_async(torch::Tensor& flat) {
  auto p = std::make_shared<Pending>();
  p->tensors = {flat};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  p->work = impl_->pg->allreduce(p->tensors, o);
  return p;
}

void ProcessGroup::wait(const std::shared_ptr<Pending>& pending) {
  pending->work->wait();
}

// ---------------------------------------------------------------------------------------------

GradSync::GradSync(ProcessGroup& group, std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
                   bool find_unused)
    : group_(group), params_(std::move(parameters)), find_unused_(find_unused) {
  if (bucket_bytes <= 0) throw Error("train.distributed.bucket_mb must be positive");
  int64_t filled = 0;
  for (std::size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    if (!p.is_floating_point()) continue;
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    if (buckets_.empty() || filled + bytes > bucket_bytes ||
        params_[buckets_.back().front()].scalar_type() != p.scalar_type()) {
      buckets_.emplace_back();
      filled = 0;
    }
    buckets_.back().push_back(k);
    filled += bytes;
  }
}

void GradSync::sync() {
  torch::NoGradGuard no_grad;
  const double inv = 1.0 / group_.world_size();
  std::vector<torch::Tensor> flats;
  std::vector<int64_t> grad_numel;
  std::vector<std::shared_ptr<ProcessGroup::Pending>> pending;
  for (const auto& bucket : buckets_) {
    // The gradients, then (find_unused) one flag per parameter: 1 = this rank has its gradient.
    std::vector<torch::Tensor> parts;
    std::vector<float> used;
    int64_t n = 0;
    for (std::size_t k : bucket) {
      const auto& p = params_[k];
      parts.push_back(p.grad().defined() ? p.grad().reshape(-1) : torch::zeros({p.numel()}, p.options()));
      used.push_back(p.grad().defined() ? 1.0f : 0.0f);
      n += p.numel();
    }
    if (find_unused_) {
      torch::Tensor flags = torch::tensor(used);
      if (parts.front().is_cuda()) flags = flags.pin_memory();  // an asynchronous copy
      parts.push_back(flags.to(parts.front().options(), /*non_blocking=*/true));
    }
    torch::Tensor flat = torch::cat(parts).to(group_.device());
    pending.push_back(group_.all_reduce_async(flat));
    flats.push_back(flat);
    grad_numel.push_back(n);
  }
  for (const auto& p : pending) ProcessGroup::wait(p);
  // Which parameters some rank used: one read-back for all buckets (the only host sync here).
  torch::Tensor used;
  if (find_unused_) {
    std::vector<torch::Tensor> flags;
    for (std::size_t b = 0; b < buckets_.size(); ++b)
      flags.push_back(flats[b].narrow(0, grad_numel[b], static_cast<int64_t>(buckets_[b].size())));
    used = torch::cat(flags).cpu();
  }
  int64_t flag = 0;
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    const torch::Tensor grads = flats[b].narrow(0, 0, grad_numel[b]).mul_(inv);
    int64_t offset = 0;
    for (std::size_t k : buckets_[b]) {
      auto& p = params_[k];
      const torch::Tensor part = grads.narrow(0, offset, p.numel()).view(p.sizes()).to(p.device());
      offset += p.numel();
      if (used.defined() && used[flag++].item<float>() == 0) continue;  // no rank used it
      if (p.grad().defined())
        p.mutable_grad().copy_(part);
      else
        p.mutable_grad() = part.clone();
    }
  }
}

}  // namespace losatok::train
