// gnuplot scripts for training curves and analysis plots.
#include "losatok/eval/plot.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"

namespace fs = std::filesystem;

namespace losatok::eval {

namespace {

// A gnuplot single-quoted string literal.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string find_gnuplot() {
  if (const char* env = std::getenv("LOSATOK_GNUPLOT"); env && *env) return fs::exists(env) ? env : "";
  return find_program("gnuplot");
}

bool write_plot(const std::string& png, const std::vector<Panel>& panels, int width, int height) {
  if (panels.empty()) throw Error("plot '" + png + "': nothing to plot");
  const fs::path stem = fs::path(png).replace_extension("");
  if (!stem.parent_path().empty()) fs::create_directories(stem.parent_path());
  const std::string tsv = stem.string() + ".tsv", script = stem.string() + ".gp";
  {
    // One gnuplot data block per series (blocks separated by two blank lines).
    std::ofstream out(tsv);
    out.precision(9);
    for (const auto& p : panels)
      for (const auto& s : p.series) {
        out << "# " << p.title << " | " << s.title << "\n";
        for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
          if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) out << s.x[i] << '\t' << s.y[i] << '\n';
        out << "\n\n";
      }
    if (!out) throw Error("plot: cannot write '" + tsv + "'");
  }
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty()) {
    spdlog::warn("plot: gnuplot not found (scripts/setup.sh installs gnuplot-nox); data in {}", tsv);
    return false;
  }
  const int cols = std::min<int>(3, static_cast<int>(panels.size()));
  const int rows = (static_cast<int>(panels.size()) + cols - 1) / cols;
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size " << width * cols << "," << height * rows << " font 'sans,9'\n"
       << "set output " << quoted(png) << "\nset grid\nset key top right noenhanced\n"
       << "set multiplot layout " << rows << "," << cols << "\n";
    int block = 0;
    for (const auto& p : panels) {
      gp << "set title " << quoted(p.title) << " noenhanced\nset xlabel " << quoted(p.xlabel)
         << "\nset ylabel " << quoted(p.ylabel) << "\n"
         << (p.logx ? "set logscale x\n" : "unset logscale x\n")
         << (p.logy ? "set logscale y\n" : "unset logscale y\n");
      gp << "plot ";
      for (std::size_t i = 0; i < p.series.size(); ++i, ++block)
        gp << (i ? ", " : "") << quoted(tsv) << " index " << block << " with linespoints pt 7 ps 0.4 title "
           << quoted(p.series[i].title);
      gp << "\n";
    }
    gp << "unset multiplot\n";
    if (!gp) throw Error("plot: cannot write '" + script + "'");
  }
  const std::string log = stem.string() + ".gnuplot.log";
  const int rc = std::system(
      (shell_quote(gnuplot) + " " + shell_quote(script) + " > " + shell_quote(log) + " 2>&1").c_str());
  if (rc != 0) throw Error("plot: gnuplot failed on '" + script + "' (see " + log + ")");
  fs::remove(log);
  return true;
}

std::vector<std::string> plot_run(const std::string& run_dir) {
  const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(metrics);
  if (!in)
    throw Error("plot: no metrics file '" + metrics.string() + "' (is '" + run_dir + "' a run folder?)");
  // group -> metric -> (steps, values)
  std::map<std::string, std::map<std::string, Series>> groups;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      // A run killed mid-write leaves a partial last line; the rest still plots.
      spdlog::warn("plot: {} line {} is not JSON, skipped", metrics.string(), n);
      continue;
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    for (const auto& [key, value] : j.items()) {
      if (key == "step" || key == "time" || !value.is_number()) continue;
      const auto slash = key.find('/');
      const std::string group = slash == std::string::npos ? "other" : key.substr(0, slash);
      Series& s = groups[group][key];
      s.title = key;
      s.x.push_back(step);
      s.y.push_back(value.get<double>());
    }
  }
  if (groups.empty()) throw Error("plot: '" + metrics.string() + "' holds no metric");
  std::vector<std::string> written;
  for (auto& [group, metrics_of] : groups) {
    std::vector<Panel> panels;
    for (auto& [key, s] : metrics_of) {
      Panel p;
      p.title = key;
      p.xlabel = "step";
      p.series.push_back(std::move(s));
      panels.push_back(std::move(p));
    }
    const std::string png = (fs::path(run_dir) / "plots" / (group + ".png")).string();
    if (write_plot(png, panels)) written.push_back(png);
  }
  return written;
}

}  // namespace losatok::eval
