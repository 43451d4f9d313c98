// `losatok inspect`: list the tensors of a safetensors file or a torch.save checkpoint.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "commands.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/torch_pickle.h"
#include "losatok/io/weights.h"
#include "losatok/train/checkpoint.h"

namespace losatok::cli {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

namespace {

void print_entry(const io::TensorEntry& e, const std::string& where = "") {
  std::cout << e.name << "\t" << e.dtype << "\t[";
  for (std::size_t i = 0; i < e.shape.size(); ++i) std::cout << (i ? ", " : "") << e.shape[i];
  std::cout << "]" << (where.empty() ? "" : "\t" + where) << "\n";
}

}  // namespace

void add_inspect_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand(
      "inspect",
      "list the tensors (name, dtype, shape) of a .safetensors / .pt file, checkpoint or HF shard folder");
  auto path = std::make_shared<std::string>();
  auto key = std::make_shared<std::string>();
  auto verify = std::make_shared<bool>(false);
  sub->add_option("file", *path, "weights file, checkpoint folder, or model.safetensors.index.json")
      ->required();
  sub->add_option("--key", *key, ".pt only: top-level entry to read (default: state_dict if present)");
  sub->add_flag("--verify", *verify,
                "check the content: a checkpoint folder's files against the sizes and XXH64 checksums of its "
                "progress.json, a weights file by reading every tensor; exit 1 when damaged");
  sub->callback([&ctx, path, key, verify] {
    ctx.action = [path, key, verify]() {
      if (*verify) {
        namespace fs = std::filesystem;
        if (fs::is_directory(*path) && fs::exists(fs::path(*path) / train::kProgressFile)) {
          const std::string why = train::Checkpointer::check(*path, /*verify_content=*/true);
          if (!why.empty()) throw Error("checkpoint '" + *path + "' is damaged: " + why);
          std::cout << *path << ": every file matches its size and checksum\n";
          return 0;
        }
        // Reading every tensor checks the header, the byte ranges and (in a checkpoint folder)
        // the file's checksum.
        const io::WeightSet w = io::read_weights(*path, [](const std::string&) { return true; });
        std::cout << w.source << ": " << w.tensors.size() << " tensors read"
                  << (fs::exists(fs::path(w.source).parent_path() / train::kProgressFile)
                          ? ", checksum matches\n"
                          : " (no checksum recorded for a file outside a checkpoint)\n");
        return 0;
      }
      const std::string file = io::resolve_weights_path(*path);
      if (ends_with(file, ".json")) {
        // Shards: headers only, so a 30 GB checkpoint lists in a moment.
        std::map<std::string, std::vector<std::string>> by_shard;
        for (const auto& [name, shard] : io::read_shard_index(file)) by_shard[shard].push_back(name);
        std::size_t n = 0;
        for (const auto& [shard, names] : by_shard) {
          const auto h = io::read_safetensors_header(shard);
          const std::set<std::string> wanted(names.begin(), names.end());
          const std::string where = std::filesystem::path(shard).filename().string();
          for (const auto& e : h.tensors)
            if (wanted.count(e.name)) print_entry(e, where), ++n;
        }
        std::cout << n << " tensors in " << by_shard.size() << " shards\n";
      } else if (ends_with(file, ".safetensors")) {
        const auto h = io::read_safetensors_header(file);
        for (const auto& [k, v] : h.metadata) std::cout << "# " << k << ": " << v << "\n";
        for (const auto& e : h.tensors) print_entry(e);
        std::cout << h.tensors.size() << " tensors\n";
      } else {
        const auto sd = io::load_torch_state_dict(file, *key);
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
