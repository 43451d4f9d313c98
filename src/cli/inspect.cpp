// `losatok inspect`: list the tensors of a safetensors file or a torch.save checkpoint.
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/torch_pickle.h"

namespace losatok::cli {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

void add_inspect_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand("inspect",
                                 "list the tensors (name, dtype, shape) of a .safetensors or .pt/.pth file");
  auto path = std::make_shared<std::string>();
  auto key = std::make_shared<std::string>();
  sub->add_option("file", *path, "weights file")->required();
  sub->add_option("--key", *key, ".pt only: top-level entry to read (default: state_dict if present)");
  sub->callback([&ctx, path, key] {
    ctx.action = [path, key]() {
      if (ends_with(*path, ".safetensors")) {
        const auto h = io::read_safetensors_header(*path);
        for (const auto& [k, v] : h.metadata) std::cout << "# " << k << ": " << v << "\n";
        for (const auto& e : h.tensors) {
          std::cout << e.name << "\t" << e.dtype << "\t[";
          for (std::size_t i = 0; i < e.shape.size(); ++i) std::cout << (i ? ", " : "") << e.shape[i];
          std::cout << "]\n";
        }
        std::cout << h.tensors.size() << " tensors\n";
      } else {
        const auto sd = io::load_torch_state_dict(*path, *key);
        for (const auto& [name, t] : sd.tensors)
          std::cout << name << "\t" << t.scalar_type() << "\t" << t.sizes() << "\n";
        std::cout << sd.tensors.size() << " tensors";
        if (!sd.skipped.empty()) std::cout << ", " << sd.skipped.size() << " non-tensor entries skipped";
        std::cout << "\n";
      }
      return 0;
    };
  });
}

}  // namespace losatok::cli
