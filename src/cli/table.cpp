// `losatok table TABLE.yaml`: one paper table or figure (docs/recipes.md, "Paper tables"). It trains
// or resumes each run the YAML lists, runs its evaluations, and writes our numbers beside the
// paper's as Markdown, CSV and JSON (plus a plot where the paper has a figure). Every step is
// this binary run as a child process (`losatok train ...`, `losatok eval ...`), with its output
// in OUT_DIR/logs/, so a table is exactly the commands a user would type.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "commands.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/core/run_config.h"
#include "losatok/eval/plot.h"

extern char** environ;

namespace fs = std::filesystem;
using nlohmann::json;

namespace losatok::cli {

namespace {

struct TableColumn {
  std::string key, title, from, path;
  double scale = 1.0;
  bool higher_better = false;
  int digits = 3;
};

struct TableRun {
  std::string name, label, config;
  std::vector<std::string> overrides, evals;
  bool evals_given = false;  // `evals: []` runs none; absent: all of the table's (rows only)
  std::string series;        // the plot line this run belongs to (default: one line per column)
  // losatok commands run before training (e.g. `extract` of a tokenizer run's latents for a DiT
  // run); each must be resumable, as `extract` is.
  std::vector<std::vector<std::string>> prepare;
  bool row = true;
  double x = std::nan("");
  std::map<std::string, double> paper;
};

// An evaluation: `args` (a losatok eval command line), run on a run's checkpoint. {checkpoint}
// and {run_dir} in the arguments become that checkpoint and run folder; without {checkpoint},
// `--checkpoint CKPT` is appended. `before` lists commands run first (e.g. `generate` into
// {run_dir}/generated for `eval gen`). `--out JSON` is always appended.
struct TableEval {
  std::vector<std::string> args;
  std::vector<std::vector<std::string>> before;
  std::string checkpoint = "best";  // best | latest | step-N
};

struct TableSpec {
  std::string file, title, source, out_dir, note;
  std::map<std::string, std::string> vars;
  std::vector<std::string> overrides;
  std::vector<TableRun> runs;
  std::map<std::string, TableEval> evals;
  std::vector<TableColumn> columns;
  // plot
  std::string plot_x_label;
  bool plot_logx = false;
  std::vector<std::string> plot_columns;
};

struct TableOptions {
  std::string file, out_dir, launcher;
  std::vector<std::string> vars;
  std::vector<std::string> only, overrides;
  bool no_train = false, force_eval = false, dry_run = false;
};

[[noreturn]] void table_error(const TableSpec& t, const std::string& path, const std::string& message) {
  throw ConfigError(path, message, t.file);
}

std::string scalar(const TableSpec& t, const YAML::Node& n, const std::string& path, bool required = true) {
  if (!n) {
    if (required) table_error(t, path, "is required");
    return {};
  }
  if (!n.IsScalar()) table_error(t, path, "must be a string");
  return n.as<std::string>();
}

std::vector<std::string> strings(const TableSpec& t, const YAML::Node& n, const std::string& path) {
  std::vector<std::string> out;
  if (!n) return out;
  if (!n.IsSequence()) table_error(t, path, "must be a list of strings");
  for (std::size_t i = 0; i < n.size(); ++i)
    out.push_back(scalar(t, n[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

double number(const TableSpec& t, const YAML::Node& n, const std::string& path) {
  try {
    return n.as<double>();
  } catch (const YAML::Exception&) {
    table_error(t, path, "must be a number");
  }
}

bool boolean(const TableSpec& t, const YAML::Node& n, const std::string& path) {
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    table_error(t, path, "must be true or false");
  }
}

void check_keys(const TableSpec& t, const YAML::Node& n, const std::string& path,
                const std::set<std::string>& allowed) {
  if (!n.IsMap()) table_error(t, path, "must be a map");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (!allowed.count(k)) table_error(t, path.empty() ? k : path + "." + k, "unknown key");
  }
}

// {var:NAME} -> vars[NAME]; {run:NAME} -> that run's folder; {out_dir}. Other braces (YAML flow
// maps in overrides) stay as they are.
std::string expand(const TableSpec& t, const std::string& s, const std::string& where) {
  static const std::regex token(R"(\{(var|run):([^{}]*)\}|\{out_dir\})");
  std::string out;
  auto last = s.cbegin();
  for (std::sregex_iterator it(s.begin(), s.end(), token), end; it != end; ++it) {
    const std::smatch& m = *it;
    out.append(last, m[0].first);
    last = m[0].second;
    if (!m[1].matched) {
      out += t.out_dir;
    } else if (m[1] == "var") {
      const auto v = t.vars.find(m[2]);
      if (v == t.vars.end()) table_error(t, where, "uses " + m.str() + ", and vars has no such entry");
      out += v->second;
    } else {
      bool found = false;
      for (const auto& r : t.runs) found |= r.name == m[2];
      if (!found) table_error(t, where, "uses " + m.str() + ", and the table has no run of that name");
      out += (fs::path(t.out_dir) / "runs" / m[2].str()).string();
    }
  }
  out.append(last, s.cend());
  return out;
}

TableSpec read_table(const TableOptions& o) {
  TableSpec t;
  t.file = o.file;
  YAML::Node root;
  root = config::load_yaml_file(o.file, "table");
  if (!root.IsMap()) throw Error("table '" + o.file + "': expected a map at the top level");
  check_keys(t, root, "",
             {"title", "source", "note", "out_dir", "vars", "overrides", "runs", "evals", "columns", "plot"});
  t.title = scalar(t, root["title"], "title");
  t.source = scalar(t, root["source"], "source", false);
  t.note = scalar(t, root["note"], "note", false);
  t.out_dir = o.out_dir.empty() ? scalar(t, root["out_dir"], "out_dir") : o.out_dir;
  if (const YAML::Node v = root["vars"]) {
    if (!v.IsMap()) table_error(t, "vars", "must map names to strings");
    for (const auto& kv : v)
      t.vars[kv.first.as<std::string>()] = scalar(t, kv.second, "vars." + kv.first.as<std::string>());
  }
  for (const auto& kv : o.vars) {
    const std::size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("table: --var expects NAME=VALUE, got '" + kv + "'");
    t.vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  t.overrides = strings(t, root["overrides"], "overrides");
  const YAML::Node runs = root["runs"];
  if (!runs || !runs.IsSequence() || runs.size() == 0) table_error(t, "runs", "must be a non-empty list");
  std::set<std::string> names;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const std::string p = "runs[" + std::to_string(i) + "]";
    const YAML::Node r = runs[i];
    check_keys(t, r, p,
               {"name", "label", "config", "overrides", "prepare", "evals", "row", "x", "series", "paper"});
    TableRun run;
    run.name = scalar(t, r["name"], p + ".name");
    if (run.name.empty() || run.name.find_first_of("/ \t") != std::string::npos)
      table_error(t, p + ".name", "must be a non-empty name without '/' or spaces");
    if (!names.insert(run.name).second) table_error(t, p + ".name", "'" + run.name + "' is used twice");
    run.label = r["label"] ? scalar(t, r["label"], p + ".label") : run.name;
    run.config = scalar(t, r["config"], p + ".config");
    run.overrides = strings(t, r["overrides"], p + ".overrides");
    if (const YAML::Node prep = r["prepare"]) {
      if (!prep.IsSequence())
        table_error(t, p + ".prepare", "must be a list of command lines (lists of strings)");
      for (std::size_t k = 0; k < prep.size(); ++k) {
        const std::string q = p + ".prepare[" + std::to_string(k) + "]";
        run.prepare.push_back(strings(t, prep[k], q));
        if (run.prepare.back().empty() || run.prepare.back()[0] == "train" ||
            run.prepare.back()[0] == "table")
          table_error(t, q, "must be a losatok command other than train or table");
      }
    }
    run.row = !r["row"] || boolean(t, r["row"], p + ".row");
    if (r["evals"]) run.evals = strings(t, r["evals"], p + ".evals"), run.evals_given = true;
    if (r["series"]) run.series = scalar(t, r["series"], p + ".series");
    if (r["x"]) run.x = number(t, r["x"], p + ".x");
    if (const YAML::Node paper = r["paper"]) {
      if (!paper.IsMap()) table_error(t, p + ".paper", "must map column keys to the paper's numbers");
      for (const auto& kv : paper)
        run.paper[kv.first.as<std::string>()] =
            number(t, kv.second, p + ".paper." + kv.first.as<std::string>());
    }
    t.runs.push_back(std::move(run));
  }
  if (const YAML::Node evals = root["evals"]) {
    if (!evals.IsMap()) table_error(t, "evals", "must map names to {args, checkpoint}");
    for (const auto& kv : evals) {
      const std::string name = kv.first.as<std::string>(), p = "evals." + name;
      if (name == "val") table_error(t, p, "'val' is the runs' own validation metrics; pick another name");
      check_keys(t, kv.second, p, {"args", "before", "checkpoint"});
      TableEval e;
      e.args = strings(t, kv.second["args"], p + ".args");
      if (const YAML::Node b = kv.second["before"]) {
        if (!b.IsSequence())
          table_error(t, p + ".before", "must be a list of command lines (lists of strings)");
        for (std::size_t k = 0; k < b.size(); ++k)
          e.before.push_back(strings(t, b[k], p + ".before[" + std::to_string(k) + "]"));
      }
      if (e.args.empty() || e.args[0] != "eval")
        table_error(t, p + ".args", "must start with eval (a losatok eval command)");
      if (kv.second["checkpoint"]) e.checkpoint = scalar(t, kv.second["checkpoint"], p + ".checkpoint");
      t.evals[name] = e;
    }
  }
  const YAML::Node cols = root["columns"];
  if (!cols || !cols.IsSequence() || cols.size() == 0) table_error(t, "columns", "must be a non-empty list");
  std::set<std::string> keys;
  for (std::size_t i = 0; i < cols.size(); ++i) {
    const std::string p = "columns[" + std::to_string(i) + "]";
    check_keys(t, cols[i], p, {"key", "title", "from", "path", "scale", "higher_better", "digits"});
    TableColumn c;
    c.key = scalar(t, cols[i]["key"], p + ".key");
    if (!keys.insert(c.key).second) table_error(t, p + ".key", "'" + c.key + "' is used twice");
    c.title = cols[i]["title"] ? scalar(t, cols[i]["title"], p + ".title") : c.key;
    c.from = scalar(t, cols[i]["from"], p + ".from", false);
    c.path = scalar(t, cols[i]["path"], p + ".path", false);
    if (!c.from.empty() && c.from != "val" && !t.evals.count(c.from))
      table_error(t, p + ".from", "'" + c.from + "' is neither 'val' nor one of the table's evals");
    if (!c.from.empty() && c.path.empty()) table_error(t, p + ".path", "is required with 'from'");
    if (cols[i]["scale"]) c.scale = number(t, cols[i]["scale"], p + ".scale");
    if (cols[i]["digits"]) c.digits = static_cast<int>(number(t, cols[i]["digits"], p + ".digits"));
    if (c.digits < 0 || c.digits > 12) table_error(t, p + ".digits", "must be in 0..12");
    c.higher_better = cols[i]["higher_better"] && boolean(t, cols[i]["higher_better"], p + ".higher_better");
    t.columns.push_back(c);
  }
  for (std::size_t i = 0; i < t.runs.size(); ++i) {
    for (const auto& [k, v] : t.runs[i].paper)
      if (!keys.count(k)) table_error(t, "runs[" + std::to_string(i) + "].paper." + k, "is not a column key");
    for (const auto& e : t.runs[i].evals)
      if (!t.evals.count(e))
        table_error(t, "runs[" + std::to_string(i) + "].evals",
                    "'" + e + "' is not one of the table's evals");
  }
  if (const YAML::Node plot = root["plot"]) {
    check_keys(t, plot, "plot", {"x_label", "logx", "columns"});
    t.plot_x_label = scalar(t, plot["x_label"], "plot.x_label");
    t.plot_logx = plot["logx"] && boolean(t, plot["logx"], "plot.logx");
    t.plot_columns = strings(t, plot["columns"], "plot.columns");
    for (const auto& c : t.plot_columns)
      if (!keys.count(c)) table_error(t, "plot.columns", "'" + c + "' is not a column key");
  }
  // Expand placeholders now that every name is known.
  for (auto& ov : t.overrides) ov = expand(t, ov, "overrides");
  for (std::size_t i = 0; i < t.runs.size(); ++i) {
    const std::string p = "runs[" + std::to_string(i) + "]";
    t.runs[i].config = expand(t, t.runs[i].config, p + ".config");
    for (auto& ov : t.runs[i].overrides) ov = expand(t, ov, p + ".overrides");
    for (auto& cmd : t.runs[i].prepare)
      for (auto& a : cmd) a = expand(t, a, p + ".prepare");
  }
  for (auto& [name, e] : t.evals) {
    for (auto& a : e.args) a = expand(t, a, "evals." + name + ".args");
    for (auto& cmd : e.before)
      for (auto& a : cmd) a = expand(t, a, "evals." + name + ".before");
  }
  return t;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() &&
      s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+./=:,") ==
          std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

// Runs argv (argv[0] a path) with stdout and stderr appended to `log`; returns the exit status.
int run_logged(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error("table: cannot start " + argv[0] + ": " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw Error("table: waitpid failed for " + argv[0]);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string last_lines(const std::string& path, std::size_t n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "  | " + lines[i] + "\n";
  return out;
}

// One step of a table: prints "  RUN: WHAT  [log]", writes argv to logs/STEM.cmd and (unless a dry
// run) runs it with its output in logs/STEM.log. A failure prints the log's end, removes the .cmd
// (it must not look like a finished command) and throws a one-line error.
void run_step(const std::vector<std::string>& argv, const fs::path& logs, const std::string& stem,
              const std::string& run, const std::string& what, bool dry_run) {
  const std::string log = (logs / (stem + ".log")).string(), cmd = (logs / (stem + ".cmd")).string();
  std::cout << "  " << run << ": " << what << (dry_run ? " (dry run)" : "") << "  [" << log << "]"
            << std::endl;
  write_file_atomic(cmd, command_line(argv) + "\n");
  if (dry_run || run_logged(argv, log) == 0) return;
  std::cerr << last_lines(log, 8);
  fs::remove(cmd);
  throw Error("table: run '" + run + "': " + what + " failed (its log's end above; all of it in " + log +
              ")");
}

// The checkpoint folder an evaluation reads: `best`, the newest step-N (`latest`), or a named one.
std::string pick_checkpoint(const std::string& run_dir, const std::string& which) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (which != "best" && which != "latest") return (dir / which).string();
  if (which == "best" && fs::exists(dir / "best")) return (dir / "best").string();
  int64_t newest = -1;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("step-", 0) != 0 || n.find(".tmp") != std::string::npos) continue;
      try {
        newest = std::max<int64_t>(newest, std::stoll(n.substr(5)));
      } catch (const std::exception&) {
      }
    }
  if (newest < 0) return {};
  return (dir / ("step-" + std::to_string(newest))).string();
}

// A number at a dotted path of a JSON document (NaN when absent or not a number).
double json_at(const json& j, const std::string& path) {
  const json* cur = &j;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return std::nan("");
    const auto it = cur->find(key);
    if (it == cur->end()) return std::nan("");
    cur = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur->is_number() ? cur->get<double>() : std::nan("");
}

// The last value of a validation metric in RUN_DIR/metrics.jsonl.
double last_validation(const std::string& run_dir, const std::string& key) {
  std::ifstream in((fs::path(run_dir) / "metrics.jsonl").string());
  double v = std::nan("");
  std::string line;
  while (std::getline(in, line)) {
    try {
      const json j = json::parse(line);
      if (const auto it = j.find(key); it != j.end() && it->is_number()) v = it->get<double>();
    } catch (const json::exception&) {
    }
  }
  return v;
}

// A CSV field, quoted (inner quotes doubled) when it holds a comma, quote or line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// Markdown table cell text: a literal '|' escaped.
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string fmt_num(double v, int digits) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : std::string("n/a");
}

// Pairs of rows whose order (by value) agrees between ours and the paper's, of the pairs both
// have; a pair the paper ties says nothing about order and is left out, a tie of ours disagrees.
std::pair<int, int> concordance(const std::vector<double>& ours, const std::vector<double>& paper) {
  int agree = 0, pairs = 0;
  for (std::size_t i = 0; i < ours.size(); ++i)
    for (std::size_t j = i + 1; j < ours.size(); ++j) {
      if (!std::isfinite(ours[i]) || !std::isfinite(ours[j]) || !std::isfinite(paper[i]) ||
          !std::isfinite(paper[j]))
        continue;
      const double a = ours[i] - ours[j], b = paper[i] - paper[j];
      if (b == 0) continue;
      ++pairs;
      if (a * b > 0) ++agree;
    }
  return {agree, pairs};
}

int run_table(const TableOptions& o) {
  const TableSpec t = read_table(o);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const fs::path logs = fs::path(t.out_dir) / "logs";
  fs::create_directories(logs);
  std::vector<std::string> launcher;
  {
    std::istringstream in(o.launcher);
    std::string w;
    while (in >> w) launcher.push_back(w);
  }
  const std::set<std::string> only(o.only.begin(), o.only.end());
  for (const auto& name : only) {
    bool found = false;
    for (const auto& r : t.runs) found |= r.name == name;
    if (!found) throw Error("table: --only " + name + ": " + t.file + " has no run of that name");
  }
  // Every run's config resolves before anything trains (a typo fails now, not after hours).
  for (const TableRun& r : t.runs) {
    std::vector<std::string> overrides = t.overrides;
    overrides.insert(overrides.end(), o.overrides.begin(), o.overrides.end());
    overrides.insert(overrides.end(), r.overrides.begin(), r.overrides.end());
    try {
      read_root_config({r.config}, overrides);
    } catch (const Error& e) {
      throw Error("table: run '" + r.name + "' of " + t.file + ": " + first_line(e.what()));
    }
  }
  std::cout << "table: " << t.title << " (" << t.runs.size() << " runs, into " << t.out_dir << ")"
            << std::endl;
  // ---- train and evaluate
  std::map<std::string, std::map<std::string, json>> results;  // run -> eval -> JSON
  for (const TableRun& r : t.runs) {
    const std::string run_dir = (fs::path(t.out_dir) / "runs" / r.name).string();
    const bool selected = only.empty() || only.count(r.name);
    if (selected && !o.no_train) {
      for (std::size_t k = 0; k < r.prepare.size(); ++k) {
        std::vector<std::string> argv = {self};
        argv.insert(argv.end(), r.prepare[k].begin(), r.prepare[k].end());
        run_step(argv, logs, r.name + ".prepare" + std::to_string(k), r.name, r.prepare[k][0], o.dry_run);
      }
      std::vector<std::string> argv = launcher;
      argv.push_back(self);
      for (const std::string& a : {std::string("train"), std::string("--config"), r.config,
                                   std::string("--resume"), "run_dir=" + run_dir})
        argv.push_back(a);
      // General to specific: the table's, the command line's, the run's own (which define the row).
      for (const auto& ov : t.overrides) argv.push_back(ov);
      for (const auto& ov : o.overrides) argv.push_back(ov);
      for (const auto& ov : r.overrides) argv.push_back(ov);
      run_step(argv, logs, r.name + ".train", r.name, "train", o.dry_run);
    }
    std::vector<std::string> evals = r.evals;
    if (!r.evals_given && r.row)
      for (const auto& [name, e] : t.evals) evals.push_back(name);
    for (const std::string& name : evals) {
      const TableEval& e = t.evals.at(name);
      const std::string out = (fs::path(run_dir) / "eval" / (name + ".json")).string();
      std::string ckpt = pick_checkpoint(run_dir, e.checkpoint);
      if (ckpt.empty())
        ckpt = (fs::path(run_dir) / "checkpoints" / e.checkpoint).string();  // not trained yet
      // The command lines: {checkpoint} and {run_dir} bound, --checkpoint unless named, --out.
      bool names_checkpoint = false;
      const auto bind = [&](std::vector<std::string> args) {
        for (auto& a : args)
          for (const auto& [token, value] :
               {std::pair<std::string, std::string>{"{checkpoint}", ckpt}, {"{run_dir}", run_dir}})
            for (std::size_t at = a.find(token); at != std::string::npos;
                 at = a.find(token, at + value.size())) {
              a.replace(at, token.size(), value);
              names_checkpoint |= token == "{checkpoint}";
            }
        return args;
      };
      std::vector<std::vector<std::string>> commands;
      for (const auto& b : e.before) commands.push_back(bind(b));
      names_checkpoint = false;  // of the eval command itself
      commands.push_back(bind(e.args));
      if (!names_checkpoint) {
        commands.back().push_back("--checkpoint");
        commands.back().push_back(ckpt);
      }
      commands.back().push_back("--out");
      commands.back().push_back(out);
      std::vector<std::vector<std::string>> argvs;
      for (const auto& c : commands) {
        argvs.push_back({self});
        argvs.back().insert(argvs.back().end(), c.begin(), c.end());
      }
      const auto stem = [&](std::size_t k) {
        return r.name + "." + name + (k + 1 == commands.size() ? "" : ".before" + std::to_string(k));
      };
      if (selected) {
        if (!o.dry_run && !fs::exists(ckpt))
          throw Error("table: run '" + r.name + "' has no checkpoint '" + e.checkpoint + "' in " + run_dir +
                      "/checkpoints (train it first)");
        // Fresh: the JSON is newer than the checkpoint and came from the same command line.
        const std::string cmd_file = (logs / (stem(commands.size() - 1) + ".cmd")).string();
        const bool fresh = !o.dry_run && fs::exists(out) &&
                           fs::last_write_time(out) >= fs::last_write_time(ckpt) && fs::exists(cmd_file) &&
                           read_text_file(cmd_file) == command_line(argvs.back()) + "\n";
        if (!fresh || o.force_eval) {
          if (!o.dry_run) fs::create_directories(fs::path(out).parent_path());
          for (std::size_t k = 0; k < argvs.size(); ++k)
            run_step(argvs[k], logs, stem(k), r.name,
                     k + 1 == commands.size() ? "eval " + name : commands[k][0] + " (for eval " + name + ")",
                     o.dry_run);
        }
      }
      if (fs::exists(out)) {
        try {
          std::ifstream in(out);
          results[r.name][name] = json::parse(in);
        } catch (const json::exception& ex) {
          throw Error("table: " + out + ": " + first_line(ex.what()));
        }
      }
    }
  }
  if (o.dry_run) return 0;
  // ---- collect
  std::vector<const TableRun*> rows;
  for (const auto& r : t.runs)
    if (r.row) rows.push_back(&r);
  std::vector<std::vector<double>> ours(rows.size(), std::vector<double>(t.columns.size(), std::nan(""))),
      paper = ours;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string run_dir = (fs::path(t.out_dir) / "runs" / rows[i]->name).string();
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      const TableColumn& col = t.columns[c];
      if (const auto it = rows[i]->paper.find(col.key); it != rows[i]->paper.end()) paper[i][c] = it->second;
      if (col.from.empty()) continue;
      double v = std::nan("");
      if (col.from == "val") {
        v = last_validation(run_dir, col.path);
      } else if (const auto rit = results.find(rows[i]->name); rit != results.end()) {
        if (const auto eit = rit->second.find(col.from); eit != rit->second.end())
          v = json_at(eit->second, col.path);
      }
      ours[i][c] = v * col.scale;
    }
  }
  // ---- write
  std::ostringstream md, csv;
  md << "# " << t.title << "\n\n";
  if (!t.source.empty()) md << "Paper: " << t.source << ". ";
  md << "Each cell: ours / paper.";
  if (!t.note.empty()) md << " " << t.note;
  md << "\n\n| run |";
  for (const auto& c : t.columns) md << " " << md_cell(c.title) << " |";
  md << "\n|---|";
  for (std::size_t c = 0; c < t.columns.size(); ++c) md << "---:|";
  md << "\n";
  csv << "run,label,column,ours,paper\n";
  json j = {{"title", t.title}, {"source", t.source}, {"table", t.file}, {"rows", json::array()}};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    md << "| " << md_cell(rows[i]->label) << " |";
    json values = json::object();
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      const TableColumn& col = t.columns[c];
      if (std::isfinite(ours[i][c]) || std::isfinite(paper[i][c]))
        md << " " << fmt_num(ours[i][c], col.digits) << " / " << fmt_num(paper[i][c], col.digits) << " |";
      else
        md << " – |";
      csv << csv_field(rows[i]->name) << "," << csv_field(rows[i]->label) << "," << csv_field(col.key) << ","
          << (std::isfinite(ours[i][c]) ? fmt::format("{}", ours[i][c]) : "") << ","
          << (std::isfinite(paper[i][c]) ? fmt::format("{}", paper[i][c]) : "") << "\n";
      values[col.key] = {{"ours", std::isfinite(ours[i][c]) ? json(ours[i][c]) : json(nullptr)},
                         {"paper", std::isfinite(paper[i][c]) ? json(paper[i][c]) : json(nullptr)}};
    }
    md << "\n";
    j["rows"].push_back({{"run", rows[i]->name}, {"label", rows[i]->label}, {"values", values}});
  }
  // Orderings: per column, the pairs of rows ranked the same way as in the paper.
  md << "\nOrder agreement with the paper (pairs of rows ranked alike, of the pairs both have):";
  json agreement = json::object();
  for (std::size_t c = 0; c < t.columns.size(); ++c) {
    std::vector<double> a, b;
    for (std::size_t i = 0; i < rows.size(); ++i) a.push_back(ours[i][c]), b.push_back(paper[i][c]);
    const auto [agree, pairs] = concordance(a, b);
    if (pairs == 0) continue;
    // The best row by each, in the column's direction (higher_better, else lower).
    const auto best = [&](const std::vector<double>& v) {
      int k = -1;
      for (std::size_t i = 0; i < v.size(); ++i)
        if (std::isfinite(v[i]) && std::isfinite(a[i]) && std::isfinite(b[i]) &&
            (k < 0 || (t.columns[c].higher_better ? v[i] > v[k] : v[i] < v[k])))
          k = static_cast<int>(i);
      return k;
    };
    const int bo = best(a), bp = best(b);
    md << "\n- " << t.columns[c].title << ": " << agree << " / " << pairs << " pairs; best row ours '"
       << rows[bo]->label << "', paper '" << rows[bp]->label << "'";
    agreement[t.columns[c].key] = {
        {"agree", agree}, {"pairs", pairs}, {"best_ours", rows[bo]->name}, {"best_paper", rows[bp]->name}};
  }
  md << "\n";
  j["order_agreement"] = agreement;
  const fs::path base = fs::path(t.out_dir) / "table";
  write_file_atomic(base.string() + ".md", md.str());
  write_file_atomic(base.string() + ".csv", csv.str());
  write_file_atomic(base.string() + ".json", j.dump(2) + "\n");
  std::cout << "\n" << md.str() << "\nwrote " << base.string() << ".{md,csv,json}\n";
  if (!t.plot_columns.empty()) {
    std::vector<eval::Panel> panels;
    for (const auto& key : t.plot_columns) {
      std::size_t c = 0;
      while (t.columns[c].key != key) ++c;
      eval::Panel p;
      p.title = t.columns[c].title;
      p.xlabel = t.plot_x_label;
      p.logx = t.plot_logx;
      // One "ours" and one "paper" line per series (runs' `series`, in order of appearance).
      std::vector<std::string> names;
      for (const auto* r : rows)
        if (std::isfinite(r->x) && std::find(names.begin(), names.end(), r->series) == names.end())
          names.push_back(r->series);
      for (const auto& name : names) {
        const std::string suffix = name.empty() ? "" : " " + name;
        eval::Series so{"ours" + suffix, {}, {}}, sp{"paper" + suffix, {}, {}};
        for (std::size_t i = 0; i < rows.size(); ++i) {
          if (!std::isfinite(rows[i]->x) || rows[i]->series != name) continue;
          if (std::isfinite(ours[i][c])) so.x.push_back(rows[i]->x), so.y.push_back(ours[i][c]);
          if (std::isfinite(paper[i][c])) sp.x.push_back(rows[i]->x), sp.y.push_back(paper[i][c]);
        }
        if (!so.x.empty()) p.series.push_back(so);
        if (!sp.x.empty()) p.series.push_back(sp);
      }
      if (!p.series.empty()) panels.push_back(p);
    }
    const std::string png = base.string() + ".png";
    if (!panels.empty() && eval::write_plot(png, panels)) std::cout << "wrote " << png << "\n";
  }
  return 0;
}

}  // namespace

void add_table_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand(
      "table",
      "one paper table: train or resume its runs, evaluate them, write ours beside the paper's numbers");
  auto o = std::make_shared<TableOptions>();
  sub->add_option("table", o->file, "table YAML (configs/tables/*.yaml)")->required();
  sub->add_option("overrides", o->overrides,
                  "key=value overrides for every training run (after the table's own)");
  sub->add_option("--out-dir", o->out_dir,
                  "where runs, evaluations and the table go (default: the YAML's out_dir)");
  // One value per flag: `--var a=1 x.y=2` leaves x.y=2 an override.
  sub->add_option("--var", o->vars, "NAME=VALUE for {var:NAME} in the YAML (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--only", o->only,
                  "train and evaluate only this run (repeatable; the table still lists all)")
      ->allow_extra_args(false);
  sub->add_option("--launcher", o->launcher,
                  "command prefix for training, e.g. \"torchrun --nproc_per_node 8 --no-python\"");
  sub->add_flag("--no-train", o->no_train, "evaluate the checkpoints as they are");
  sub->add_flag("--force-eval", o->force_eval,
                "re-run evaluations even when their JSON is newer than the checkpoint");
  sub->add_flag("--dry-run", o->dry_run, "write the commands to OUT_DIR/logs/*.cmd without running them");
  sub->callback([&ctx, o] { ctx.action = [o]() { return run_table(*o); }; });
}

}  // namespace losatok::cli
