// PNG plots through gnuplot (Debian's gnuplot-nox) when it is installed; the data always goes
// to a .tsv beside the image, so a missing gnuplot loses no number.
#pragma once

#include <string>
#include <vector>

namespace losatok::eval {

struct Series {
  std::string title;
  std::vector<double> x, y;
};

struct Panel {
  std::string title, xlabel, ylabel;
  bool logx = false, logy = false;
  std::vector<Series> series;
};

// The gnuplot binary on PATH (or $LOSATOK_GNUPLOT), "" when there is none.
std::string find_gnuplot();

// Writes `png`'s data to the same stem + .tsv and renders the panels (a grid of up to 3
// columns) at `width` x `height` pixels per panel. Returns false, after a warning naming the
// package, when gnuplot is missing; a gnuplot failure is an error naming the script.
bool write_plot(const std::string& png, const std::vector<Panel>& panels, int width = 520, int height = 360);

// The training curves of a run: every metric of RUN_DIR/metrics.jsonl against the step, one
// PNG per group ("train", "val", "lr", "perf", ...) in RUN_DIR/plots/. Returns the PNGs
// written (none without gnuplot; the .tsv files are written either way).
std::vector<std::string> plot_run(const std::string& run_dir);

}  // namespace losatok::eval
