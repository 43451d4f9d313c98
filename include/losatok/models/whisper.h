// Whisper (Radford et al. 2022), the recogniser behind the TTS WER: the log-mel front end, the
// encoder-decoder, timestamp-free decoding (greedy and beam search) and the long-form loop, as
// openai/whisper computes them. Token ids in, token ids out: the tokenizer lives in data/.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace losatok::models {

// whisper/audio.py's fixed front end.
constexpr int64_t kWhisperSampleRate = 16000;
constexpr int64_t kWhisperNFft = 400;
constexpr int64_t kWhisperHop = 160;
constexpr int64_t kWhisperChunkSamples = 480000;  // 30 s
constexpr int64_t kWhisperChunkFrames = 3000;     // mel frames in 30 s

// openai's ModelDimensions. Official sizes: tiny 384/6/4, base 512/8/6, small 768/12/12,
// medium 1024/16/24, large 1280/20/32 (state / heads / layers); large-v3 has 128 mels and
// n_vocab 51866.
struct WhisperConfig {
  int n_mels = 80;
  int n_audio_ctx = 1500;
  int n_audio_state = 384;
  int n_audio_head = 6;
  int n_audio_layer = 4;
  int n_vocab = 51865;
  int n_text_ctx = 448;
  int n_text_state = 384;
  int n_text_head = 6;
  int n_text_layer = 4;

  // Sizes from the shapes of a state dict under openai's names. The files do not store the
  // head counts as tensors (the `dims` dict of openai's .pt is not a tensor, and our .pt reader
  // skips it): heads = state / 64, which every official size satisfies. A missing tensor or
  // an inconsistent shape is an error naming `source` and the key.
  static WhisperConfig from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                       const std::string& source);
  void validate(const std::string& source) const;
  std::string str() const;
};

// (n_mels, n_fft / 2 + 1): librosa's Slaney mel filters (htk=False, norm="slaney") at 16 kHz,
// n_fft 400, 0 to 8 kHz: what openai ships precomputed in mel_filters.npz (80 or 128 bands).
torch::Tensor whisper_mel_filters(int n_mels);

// (n_mels, frames) as whisper.log_mel_spectrogram: a 1-D 16 kHz float wave, `padding` zeros
// appended, periodic Hann, centred reflect-padded STFT without its last frame, |X|^2, mel,
// log10(max(., 1e-10)), floored at the maximum - 8, (x + 4) / 4.
torch::Tensor whisper_log_mel(const torch::Tensor& wave, int n_mels, int64_t padding = 0);

// Crops or zero-pads `x` along `dim` to `length` (whisper.pad_or_trim).
torch::Tensor whisper_pad_or_trim(const torch::Tensor& x, int64_t length, int64_t dim = -1);

// (length, channels): the encoder's sinusoidal positions (model.py's sinusoids).
torch::Tensor whisper_sinusoids(int64_t length, int64_t channels);

// query / key (no bias) / value / out, as model.py's MultiHeadAttention.
struct WhisperAttentionImpl : torch::nn::Module {
  WhisperAttentionImpl(int n_state, int n_head);
  // q_in (B, L, D); k, v (B or 1, S, D) already projected; mask (L, S) additive or undefined.
  torch::Tensor attend(const torch::Tensor& q_in, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask);
  int n_head;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};
};
TORCH_MODULE(WhisperAttention);

// Decoder state across steps: each layer's self-attention keys / values (B, L, D), grown by
// every step, and its cross-attention keys / values (1, T, D), computed once per audio.
struct WhisperKvCache {
  std::vector<torch::Tensor> self_k, self_v, cross_k, cross_v;
  int64_t length() const { return self_k.empty() || !self_k[0].defined() ? 0 : self_k[0].size(1); }
  // Keeps rows `rows` of the self-attention cache (beam search's rearrange_kv_cache).
  void select(const std::vector<int64_t>& rows);
};

// Pre-LN residual block: attn (+ cross_attn in the decoder) and mlp (Linear, exact GELU,
// Linear), with attn_ln / cross_attn_ln / mlp_ln.
struct WhisperBlockImpl : torch::nn::Module {
  WhisperBlockImpl(int n_state, int n_head, bool cross_attention);
  // Encoder: x (B, T, D).
  torch::Tensor forward(const torch::Tensor& x);
  // Decoder: x (B, L, D) at positions cache.length() onwards; the cache of `layer` is read and
  // extended, its cross keys / values computed from `xa` (1 or B, T, D) on the first call.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& xa, const torch::Tensor& mask,
                        WhisperKvCache& cache, size_t layer);
  WhisperAttention attn{nullptr}, cross_attn{nullptr};
  torch::nn::LayerNorm attn_ln{nullptr}, cross_attn_ln{nullptr}, mlp_ln{nullptr};
  torch::nn::Sequential mlp{nullptr};
};
TORCH_MODULE(WhisperBlock);

struct WhisperEncoderImpl : torch::nn::Module {
  explicit WhisperEncoderImpl(const WhisperConfig& c);
  // (B, n_mels, 2 n_audio_ctx) -> (B, n_audio_ctx, n_audio_state).
  torch::Tensor forward(const torch::Tensor& mel);
  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  torch::Tensor positional_embedding;  // (n_audio_ctx, D) buffer: the file's when present
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm ln_post{nullptr};
};
TORCH_MODULE(WhisperEncoder);

struct WhisperDecoderImpl : torch::nn::Module {
  explicit WhisperDecoderImpl(const WhisperConfig& c);
  // tokens (B, L) int64 following the cache.length() tokens already seen; audio_features
  // (1 or B, T, D). -> logits (B, L, n_vocab) = ln(x) token_embedding^T.
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& audio_features,
                        WhisperKvCache& cache);
  torch::nn::Embedding token_embedding{nullptr};
  torch::Tensor positional_embedding;  // (n_text_ctx, D) learned
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm ln{nullptr};
};
TORCH_MODULE(WhisperDecoder);

// Timestamp-free decoding options (decoding.py's DecodingOptions with without_timestamps=True
// and temperature 0). The special ids depend on the vocabulary, so the caller gives them.
struct WhisperDecodeOptions {
  int beam_size = 0;    // 0 or 1: greedy
  double patience = 1;  // beam search keeps beam_size * patience finished sequences
  std::optional<double>
      length_penalty;  // none: divide by the length; alpha: Google NMT's ((5 + n) / 6)^alpha
  int sample_len = 0;  // 0: n_text_ctx / 2
  std::vector<int64_t>
      suppress_tokens;             // always -inf (decoding.py adds the special ids: so should the caller)
  bool suppress_blank = true;      // blank_ids -inf at the first sampled position
  int64_t eot = 50257;             // multilingual <|endoftext|> (English-only: 50256)
  std::vector<int64_t> blank_ids;  // the ids of " " and eot
  void validate() const;
};

struct WhisperDecodeResult {
  std::vector<int64_t> tokens;  // sampled tokens, without the initial ones and EOT
  double sum_logprob = 0;
  double avg_logprob = 0;  // sum_logprob / (tokens + 1)
};

// transcribe.py's loop without timestamps: temperature 0 only (no fallback), no no-speech
// skipping, every window's tokens kept.
struct WhisperTranscribeOptions {
  WhisperDecodeOptions decode;
  bool condition_on_previous_text = false;  // prompt each window with the tokens so far
  int64_t sot_prev = -1;  // <|startofprev|> (50361 multilingual, 50362 large-v3): needed for the prompt
};

struct WhisperImpl : torch::nn::Module {
  explicit WhisperImpl(const WhisperConfig& c);

  // (n_mels, 3000): a 1-D 16 kHz clip cropped / zero-padded to 30 s, then log-mel (the path of
  // whisper.decode; transcribe instead pads the log-mel of a short clip with zeros).
  torch::Tensor log_mel(const torch::Tensor& wave_16k) const;
  // (B, n_mels, 3000) or (n_mels, 3000) -> (B, n_audio_ctx, n_audio_state).
  torch::Tensor encode(const torch::Tensor& mel);
  // The encoder output over a clip of any length, (T, n_audio_state): transcribe's mel (whole
  // clip + 30 s of zeros), 30 s windows, the rows covering the clip (2 mel frames per row).
  torch::Tensor embed(const torch::Tensor& wave_16k);
  // One window: audio_features (1, n_audio_ctx, D), initial_tokens the SOT sequence (and any
  // prompt before it).
  WhisperDecodeResult decode(const torch::Tensor& audio_features, const std::vector<int64_t>& initial_tokens,
                             const WhisperDecodeOptions& options);
  // The concatenated tokens of every 30 s window of a 16 kHz clip of any length.
  std::vector<int64_t> transcribe(const torch::Tensor& wave_16k, const std::vector<int64_t>& sot_sequence,
                                  const WhisperTranscribeOptions& options);

  WhisperConfig config;
  torch::Device device = torch::kCPU;
  WhisperEncoder encoder{nullptr};
  WhisperDecoder decoder{nullptr};
};
TORCH_MODULE(Whisper);

// External names -> openai's. A Hugging Face state dict (`model.encoder.*`, `model.decoder.*`,
// tied `proj_out.weight`) is renamed; openai's (possibly as `model_state_dict.*`, how our .pt
// reader flattens openai's files) kept. An unknown name is an error naming `source` and it.
std::map<std::string, torch::Tensor> whisper_openai_names(const std::map<std::string, torch::Tensor>& tensors,
                                                          const std::string& source);

// openai's .pt (torch.save({"dims", "model_state_dict"}), float16), or a Hugging Face folder
// (model.safetensors, possibly sharded, + config.json: its head counts are used) or .safetensors
// file. Frozen, eval mode, float32 on `device`. `dims`, when given (openai's dims dict), must
// agree with the shapes and sets the head counts. The encoder positions, when in the file, must
// match the sinusoids.
Whisper load_whisper(const std::string& path, const torch::Device& device = torch::kCPU,
                     const std::optional<WhisperConfig>& dims = std::nullopt);

}  // namespace losatok::models
