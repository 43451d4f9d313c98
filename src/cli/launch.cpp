// `losatok launch --nproc N -- train ...`: N processes of one multi-process job on this machine,
// with the environment torchrun would give them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT). Signals are forwarded; when one process fails the others are
// stopped, and the exit status is the first failure's.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "commands.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"

extern char** environ;

namespace losatok::cli {

namespace {

struct LaunchOptions {
  int nproc = 1;
  int port = 0;
  std::string addr = "127.0.0.1";
  double grace_s = 30;
  std::vector<std::string> command;
};

std::atomic<int> g_forward_signal{0};
extern "C" void on_launcher_signal(int sig) {
  g_forward_signal.store(sig);
}

// A TCP port nobody listens on right now (the kernel's choice for an ephemeral bind).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("launch: socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) throw Error(std::string("launch: cannot find a free port: ") + std::strerror(errno));
  return ntohs(a.sin_port);
}

int run_launch(const LaunchOptions& o) {
  if (o.nproc < 1) throw Error("launch: --nproc must be >= 1");
  if (o.command.empty())
    throw Error("launch: give the command after '--', e.g. losatok launch --nproc 2 -- train --config C");
  const int port = o.port > 0 ? o.port : free_port();
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();

  // Everything the children need is built before fork(): between fork and exec only
  // async-signal-safe calls are allowed.
  std::vector<std::string> base_env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (key == "RANK" || key == "WORLD_SIZE" || key == "LOCAL_RANK" || key == "LOCAL_WORLD_SIZE" ||
        key == "MASTER_ADDR" || key == "MASTER_PORT" || key == "TORCHELASTIC_USE_AGENT_STORE")
      continue;
    base_env.push_back(kv);
  }
  std::vector<std::vector<std::string>> envs(o.nproc, base_env);
  for (int r = 0; r < o.nproc; ++r)
    for (const auto& kv :
         {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
          "WORLD_SIZE=" + std::to_string(o.nproc), "LOCAL_WORLD_SIZE=" + std::to_string(o.nproc),
          "MASTER_ADDR=" + o.addr, "MASTER_PORT=" + std::to_string(port)})
      envs[r].push_back(kv);
  std::vector<std::string> args{self};
  args.insert(args.end(), o.command.begin(), o.command.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::vector<char*>> envps(o.nproc);
  for (int r = 0; r < o.nproc; ++r) {
    for (auto& kv : envs[r]) envps[r].push_back(kv.data());
    envps[r].push_back(nullptr);
  }

  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  spdlog::info("launch: {} processes on {}:{}: {}", o.nproc, o.addr, port, fmt::join(o.command, " "));
  std::vector<pid_t> pids;
  for (int r = 0; r < o.nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      for (const pid_t started : pids) ::kill(started, SIGKILL);
      for (const pid_t started : pids) ::waitpid(started, nullptr, 0);
      throw Error("launch: fork: " + why);
    }
    if (pid == 0) {
      // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which forwards
      // one SIGINT per rank (a rank's second signal would kill it before its checkpoint).
      ::setpgid(0, 0);
      ::execve(self.c_str(), argv.data(), envps[r].data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }

  int first_failure = 0, failed_rank = -1, alive = o.nproc;
  std::vector<bool> running(o.nproc, true);
  std::chrono::steady_clock::time_point stop_deadline{};
  bool stopping = false;
  const auto stop_all = [&](int sig) {
    for (int r = 0; r < o.nproc; ++r)
      if (running[r]) ::kill(pids[r], sig);
    if (!stopping)
      stop_deadline =
          std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                 std::chrono::duration<double>(o.grace_s));
    stopping = true;
  };
  while (alive > 0) {
    if (const int sig = g_forward_signal.exchange(0)) stop_all(sig);  // each rank checkpoints and exits
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      spdlog::warn("launch: processes still running {:.0f} s after being stopped: killing them", o.grace_s);
      for (int r = 0; r < o.nproc; ++r)
        if (running[r]) ::kill(pids[r], SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const auto it = std::find(pids.begin(), pids.end(), pid);
    if (it == pids.end()) continue;
    const int r = static_cast<int>(it - pids.begin());
    running[r] = false;
    --alive;
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (rc != 0 && first_failure == 0) {
      first_failure = rc;
      failed_rank = r;
      if (alive > 0) {
        spdlog::error("launch: rank {} exited with status {}: stopping the other ranks", r, rc);
        stop_all(SIGTERM);
      }
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (first_failure != 0)
    spdlog::error("launch: rank {} failed (exit status {})", failed_rank, first_failure);
  return first_failure;
}

}  // namespace

void add_launch_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand(
      "launch", "run N processes of one multi-process job on this machine: launch --nproc N -- train ...");
  auto o = std::make_shared<LaunchOptions>();
  sub->add_option("--nproc", o->nproc, "processes (ranks) to start")->required();
  sub->add_option("--master-port", o->port, "rendezvous port (0 = a free one)")->capture_default_str();
  sub->add_option("--master-addr", o->addr, "rendezvous address")->capture_default_str();
  sub->add_option("--grace", o->grace_s, "seconds stopped ranks get to checkpoint before SIGKILL")
      ->capture_default_str();
  sub->add_option("command", o->command, "the losatok command every rank runs (after --)");
  sub->callback([&ctx, o] {
    ctx.config_driven = true;  // the ranks set up their own runtime
    ctx.action = [&ctx, o] {
      init_logging(ctx.runtime.log_level);
      return run_launch(*o);
    };
  });
}

}  // namespace losatok::cli
