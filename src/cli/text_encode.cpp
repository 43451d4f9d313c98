// `losatok text-encode`: one caption through a frozen T5 / Flan-T5 encoder, to a safetensors file
// (for checks against Python and for tools).
#include <torch/torch.h>

#include "commands.h"
#include "losatok/core/device.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"
#include "losatok/models/t5.h"

namespace losatok::cli {

void add_text_encode_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("text-encode", "one text through a T5 / Flan-T5 encoder -> last_hidden_state");
  struct Opts {
    std::string text_encoder, text, out, device = "cpu";
    int max_tokens = 512;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("--text-encoder", o->text_encoder,
                  "Hugging Face T5 / Flan-T5 folder (config.json, model.safetensors | pytorch_model.bin, "
                  "spiece.model)")
      ->required();
  sub->add_option("--text", o->text, "the text (UTF-8)")->required();
  sub->add_option("--out", o->out, "output .safetensors: last_hidden_state (L, D) float32, input_ids (L)")
      ->required();
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  sub->add_option("--max-tokens", o->max_tokens, "longer texts are cut (EOS kept)")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  sub->callback([&ctx, o]() {
    ctx.action = [o]() {
      models::T5TextEncoder t5(o->text_encoder, resolve_device(o->device), o->max_tokens);
      const std::vector<int64_t> ids = t5.tokenize(o->text);
      const auto e = t5.encode({o->text});
      io::save_weights(o->out,
                       {{"last_hidden_state", e.hidden[0].cpu().contiguous()},
                        {"input_ids", torch::tensor(ids, torch::kLong)}},
                       "safetensors", {{"text", o->text}, {"text_encoder", o->text_encoder}});
      spdlog::info("{}: {} tokens x {}", o->out, ids.size(), t5.dim());
      return 0;
    };
  });
}

}  // namespace losatok::cli
