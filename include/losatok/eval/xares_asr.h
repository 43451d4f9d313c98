// X-ARES' ASR task (its LibriSpeech-100h column): a SwiGLU adapter maps frozen audio frames into
// the embedding space of a frozen decoder LLM (Qwen2.5-0.5B), trained with the teacher-forced
// transcript; scored by greedy decoding and WER_inv = max(0, 1 - WER). The first step towards
// using the tokenizer's features as an audio LLM's input.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "losatok/eval/probe.h"

namespace losatok::data {
class HfTokenizer;
}
namespace losatok::models {
class Qwen2ForCausalLMImpl;
}

namespace losatok::eval {

// X-ARES' EncoderAdapter: proj(silu(fc_1(x)) * fc_2(x)), intermediate = the LLM's MLP width.
struct AsrAdapterImpl : torch::nn::Module {
  AsrAdapterImpl(int64_t dim, int64_t intermediate, int64_t embed);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, dim) -> (B, T, embed)
  torch::nn::Linear fc_1{nullptr}, fc_2{nullptr}, proj{nullptr};
};
TORCH_MODULE(AsrAdapter);

// Frame features of each clip (T, D) and its transcript.
struct AsrSet {
  std::vector<torch::Tensor> x;
  std::vector<std::string> text;
  int64_t size() const { return static_cast<int64_t>(x.size()); }
};

struct AsrConfig {
  ProbeConfig probe;                         // epochs, batch_size (X-ARES: 4), lr, final_lr_fraction, seed
  std::string separator = "<|vision_end|>";  // starts the transcript after the audio
  int64_t max_new_tokens = 200;
  double repetition_penalty = 1.1;
};

struct AsrResult {
  double test = 0;   // WER_inv of greedy transcripts of the test split
  double valid = 0;  // the best epoch's teacher-forced WER_inv on the validation split
  int best_epoch = 0;
  std::vector<double> epoch_loss, epoch_valid;
  std::vector<std::string> hypotheses, references;  // test, as decoded / as given
};

// The teacher-forced cross-entropy of `text` after `audio` (B, T, D) with `lengths` (B): the
// adapter output, then separator + transcript + end of text, positions 0.. over the whole
// padded sequence (as X-ARES calls the model without position ids); predicted tokens are the
// separator, the transcript and the end token. Also returns the argmax predictions' text.
struct AsrStep {
  torch::Tensor loss;
  std::vector<std::string> predicted;  // teacher-forced argmax, cut to the reference's length
};
AsrStep asr_forward(AsrAdapterImpl& adapter, models::Qwen2ForCausalLMImpl& llm, const data::HfTokenizer& tok,
                    const torch::Tensor& audio, const torch::Tensor& lengths,
                    const std::vector<std::string>& text, const AsrConfig& c, bool decode);

// Greedy transcripts of a batch (X-ARES AsrModelForGeneration.generate).
std::vector<std::string> asr_generate(AsrAdapterImpl& adapter, models::Qwen2ForCausalLMImpl& llm,
                                      const data::HfTokenizer& tok, const torch::Tensor& audio,
                                      const torch::Tensor& lengths, const AsrConfig& c);

// Trains a fresh adapter on `train` (the LLM stays frozen), keeps the epoch with the best
// validation WER_inv, transcribes `test`. `adapter_out` (optional) receives the kept adapter.
AsrResult run_asr_probe(const AsrSet& train, const AsrSet& valid, const AsrSet& test,
                        models::Qwen2ForCausalLMImpl& llm, const data::HfTokenizer& tok, const AsrConfig& c,
                        AsrAdapter* adapter_out = nullptr);

// The adapter as safetensors under X-ARES' names (encoder_adapter.fc_1.weight, ...), with its
// sizes in the metadata.
void save_asr_adapter(AsrAdapterImpl& adapter, const std::string& path);

}  // namespace losatok::eval
