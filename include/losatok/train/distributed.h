// Multi-process training over c10d (README.md, "Training"; docs/run-directory.md): where this process sits
// (torchrun or Slurm environment), a process group (NCCL on CUDA, Gloo on CPU) behind our own small
// interface, and the bucketed gradient all-reduce. c10d itself stays inside distributed.cpp.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace losatok::train {

// This process's place in the job, read from the launcher's environment.
struct DistributedEnv {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // torchrun's agent already hosts the TCP store: every rank, rank 0 too, joins as a client.
  bool agent_store = false;
  std::string launcher = "none";  // torchrun | slurm | none

  bool enabled() const { return world_size > 1; }
  // torchrun / `losatok launch` (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
  // MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE) first, then Slurm (SLURM_PROCID, SLURM_NTASKS,
  // SLURM_LOCALID, the node's task count, the first host of SLURM_STEP_NODELIST, a port from
  // SLURM_JOB_ID; MASTER_ADDR / MASTER_PORT still win when set). Neither: a single process. A malformed or
  // inconsistent variable is an error naming it.
  static DistributedEnv from_environment();
  // The same from an explicit variable map (tests).
  static DistributedEnv from_variables(const std::map<std::string, std::string>& vars);
};

// The first host of a Slurm node list: "gpu[07-09,12],cpu3" -> "gpu07".
std::string first_slurm_host(const std::string& nodelist);

// A c10d process group. Collectives run on tensors of the group's device.
class ProcessGroup {
 public:
  // Connects to the rendezvous of `env` (a TCP store on master_addr:master_port) and builds the
  // backend: "nccl" (CUDA builds only), "gloo", or "auto" (NCCL for a CUDA device when built
  // with it, Gloo otherwise). `timeout` bounds every collective and the rendezvous.
  static std::unique_ptr<ProcessGroup> connect(const DistributedEnv& env, const torch::Device& device,
                                               const std::string& backend, std::chrono::seconds timeout);
  // Ranks that are threads of one process sharing `store_path` (a FileStore): the tests.
  static std::unique_ptr<ProcessGroup> connect_file(const std::string& store_path, int rank, int world_size,
                                                    std::chrono::seconds timeout);
  ~ProcessGroup();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  const std::string& backend() const { return backend_; }
  const torch::Device& device() const { return device_; }

  // In place, from rank 0, blocking. Tensors on the group's device travel over its backend
  // (NCCL on CUDA); all others over Gloo on the CPU, which never waits for the GPU.
  void broadcast(std::vector<torch::Tensor>& tensors);
  // In place sum / max / min over ranks, blocking.
  void all_reduce(torch::Tensor& tensor, const std::string& op = "sum");
  // Every rank's `tensor` (same shape and dtype on all), in rank order, on the CPU.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor);
  void barrier();

  struct Pending;  // an asynchronous collective in flight
  struct Impl;
  // Starts a sum over ranks of `flat` (a contiguous tensor on the group's device).
  std::shared_ptr<Pending> all_reduce_async(torch::Tensor& flat);
  static void wait(const std::shared_ptr<Pending>& pending);

 private:
  ProcessGroup(std::unique_ptr<Impl> impl, int rank, int world_size, std::string backend,
               torch::Device device);
  std::unique_ptr<Impl> impl_;
  int rank_, world_size_;
  std::string backend_;
  torch::Device device_;
};

// The gradient all-reduce of one optimizer's parameters (DDP's reducer, without hooks): the
// gradients are packed into flat buckets of about `bucket_bytes` in reverse parameter order
// (the order backward produces them), every bucket's sum is started asynchronously, then all
// are averaged back into the gradients, so the transfers overlap each other and the packing.
// A parameter without a gradient on some ranks counts as zeros there. With `find_unused`, one
// no rank used keeps no gradient (as in a single process), at the price of one small read-back
// per step; without, every parameter ends with a gradient and nothing waits for the device.
class GradSync {
 public:
  GradSync(ProcessGroup& group, std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
           bool find_unused = true);
  void sync();
  std::size_t buckets() const { return buckets_.size(); }

 private:
  ProcessGroup& group_;
  std::vector<torch::Tensor> params_;
  bool find_unused_;
  std::vector<std::vector<std::size_t>> buckets_;  // parameter indices per bucket
};

}  // namespace losatok::train
