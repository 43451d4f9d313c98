// `losatok encode / decode / reconstruct`: audio <-> LoSATok latents with a trained tokenizer.
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/manifest.h"
#include "losatok/io/safetensors.h"
#include "losatok/models/init.h"
#include "losatok/models/tokenizer_checkpoint.h"
#include "model_setup.h"

namespace losatok::cli {

namespace fs = std::filesystem;

void add_model_options(CLI::App& sub, ModelOptions& o) {
  sub.add_option("--checkpoint", o.checkpoint,
                 "weights: our .safetensors, a checkpoint folder, a reference .pth, or an HF folder")
      ->required();
  sub.add_flag("--lenient", o.lenient, "load the tensors that match and list the rest instead of failing");
  sub.add_option("--device", o.device, "cpu, cuda or cuda:N (overrides runtime.device)");
}

torch::Tensor fit_length(const torch::Tensor& wave, int64_t n) {
  if (wave.size(1) >= n) return wave.narrow(1, 0, n);
  return torch::constant_pad_nd(wave, {0, n - wave.size(1)});
}

LoadedVae load_vae(const ModelOptions& mo, const ConfigOptions& co, const Context& ctx,
                   bool encoder_only_ok) {
  io::WeightSet weights = io::read_weights(mo.checkpoint);
  const YAML::Node base = models::checkpoint_config(weights);
  ConfigOptions options = co;
  if (!mo.device.empty()) options.overrides.push_back("runtime.device=" + mo.device);
  LoadedVae out;
  out.config = resolve_root_config(options, ctx, base);
  const io::MappedWeights mapped = io::map_to_vae_names(weights.tensors);
  if (!mapped.scope.empty() && !encoder_only_ok && !mo.lenient)
    throw Error("checkpoint '" + weights.source + "' holds only the semantic encoder (" + mapped.scope +
                "*); this command needs a whole LoSATok tokenizer");
  {
    const models::SkipInit skip;  // every weight comes from the checkpoint
    out.vae = models::AudioVAE(out.config.model, out.config.frontend.dasheng, out.config.frontend.vocos);
  }
  std::string counts;
  for (const auto& [part, n] : models::parameter_breakdown(*out.vae))
    counts += fmt::format("{}{} {:.2f} M", counts.empty() ? "" : ", ", part, n / 1e6);
  spdlog::info("parameters: {}", counts);
  io::LoadOptions lo;
  lo.strict = !mo.lenient;
  lo.scope = mapped.scope;
  const io::LoadReport report = io::load_weights(*out.vae, mapped.tensors, weights.source, lo);
  if (report.clean())
    spdlog::info("loaded {} ({}): {}", weights.source, weights.format, report.summary());
  else
    spdlog::warn("loaded {} leniently: {}", weights.source, report.summary());
  if (!mapped.dropped.empty() || weights.unread > 0)
    spdlog::info("{}: {} tensors outside the tokenizer skipped", weights.source,
                 mapped.dropped.size() + weights.unread);
  out.device = resolve_device(out.config.runtime.device);
  out.vae->to(out.device);
  out.vae->eval();
  return out;
}

namespace {

// One input -> one output, or every manifest line -> a file in `output_dir` named after its audio.
struct Job {
  std::string input, output;
  double offset = 0.0, duration = -1.0;
};

std::vector<Job> plan_jobs(const std::string& input, const std::string& output, const std::string& manifest,
                           const std::string& output_dir, const std::string& extension) {
  if (manifest.empty()) {
    if (input.empty() || output.empty())
      throw Error("give --input and --output, or --manifest and --output-dir");
    return {{input, output}};
  }
  if (output_dir.empty()) throw Error("--manifest needs --output-dir");
  fs::create_directories(output_dir);
  std::vector<Job> jobs;
  std::set<std::string> used;
  for (const auto& e : data::read_manifest(manifest)) {
    const std::string base = fs::path(e.audio).stem().string();
    // Two clips of one file (offsets) or equal names in different folders stay distinct.
    std::string stem = base;
    for (int n = 0; used.count(stem); ++n)
      stem = base + "-" + std::to_string(e.line) + (n ? "-" + std::to_string(n) : "");
    used.insert(stem);
    jobs.push_back({e.audio, (fs::path(output_dir) / (stem + extension)).string(), e.offset, e.duration});
  }
  return jobs;
}

torch::Tensor load_wave(const Job& job, const RootConfig& cfg, int64_t min_samples,
                        const torch::Device& device) {
  std::vector<float> wave = audio::load_audio(job.input, cfg.audio.sample_rate, job.offset, job.duration,
                                              cfg.audio.resample_quality);
  if (static_cast<int64_t>(wave.size()) < min_samples)
    throw Error("audio '" + job.input + "': " + std::to_string(wave.size()) +
                " samples is shorter than one token (" + std::to_string(min_samples) + " samples)");
  return torch::from_blob(wave.data(), {1, static_cast<int64_t>(wave.size())}, torch::kFloat32)
      .to(device)
      .clone();
}

void write_wave(const std::string& path, torch::Tensor wave, int sample_rate) {
  wave = wave.reshape({-1}).to(torch::kCPU, torch::kFloat32).contiguous();
  audio::write_audio(path, wave.data_ptr<float>(), wave.numel(), 1, sample_rate);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs `fn` on every job. One input: its error is the command's. A manifest: a failing input
// is logged and the rest go on; the command then fails naming how many and the first.
int run_jobs(const std::vector<Job>& jobs, const std::function<void(const Job&)>& fn) {
  if (jobs.size() == 1) {
    fn(jobs[0]);
    return 0;
  }
  std::size_t failed = 0;
  std::string first;
  for (const Job& job : jobs) {
    try {
      fn(job);
    } catch (const std::exception& e) {
      const std::string message = first_line(e.what());
      spdlog::error("{}: {}", job.input, message);
      if (failed++ == 0) first = message;
    }
  }
  if (failed > 0)
    throw Error(std::to_string(failed) + " of " + std::to_string(jobs.size()) +
                " inputs failed (first: " + first + ")");
  return 0;
}

struct IoOptions {
  std::string input, output, manifest, output_dir;
  double chunk_seconds = 30.0;
};

void add_io_options(CLI::App& sub, IoOptions& o, const std::string& in_what, const std::string& out_what) {
  sub.add_option("--input,-i", o.input, in_what);
  sub.add_option("--output,-o", o.output, out_what);
  sub.add_option("--manifest", o.manifest, "JSON Lines manifest of inputs (instead of --input)");
  sub.add_option("--output-dir", o.output_dir, "where manifest outputs go, named after each input");
}

}  // namespace

namespace {

struct CodecOptions {
  ModelOptions model;
  ConfigOptions config;
  IoOptions io;
  bool sample = false;
  std::string tensor = "z";
};

// What every job of a codec command sees: the loaded model and the decode window in tokens.
struct CodecRun {
  LoadedVae& m;
  const CodecOptions& o;
  int64_t chunk_tokens;
  int sample_rate() const { return m.config.audio.sample_rate; }
};

// The shape encode / decode / reconstruct share: model, I/O and config options; then the
// model is loaded once, seeded and run without gradients on every input (`job`).
CLI::App* add_codec_command(CLI::App& app, Context& ctx, const std::string& name, const std::string& help,
                            const std::string& in_what, const std::string& out_what,
                            const std::string& extension, const std::shared_ptr<CodecOptions>& o,
                            std::function<void(const CodecRun&, const Job&)> job) {
  auto* sub = app.add_subcommand(name, help);
  add_model_options(*sub, o->model);
  add_io_options(*sub, o->io, in_what, out_what);
  on_config_command(*sub, ctx, o->config, [&ctx, o, extension, job]() {
    LoadedVae m = load_vae(o->model, o->config, ctx);
    if (o->config.print_config) return 0;
    torch::manual_seed(static_cast<uint64_t>(m.config.seed));
    torch::NoGradGuard no_grad;
    const CodecRun run{
        m, *o,
        static_cast<int64_t>(o->io.chunk_seconds * m.config.audio.sample_rate / m.vae->samples_per_token())};
    return run_jobs(plan_jobs(o->io.input, o->io.output, o->io.manifest, o->io.output_dir, extension),
                    [&](const Job& j) { job(run, j); });
  });
  return sub;
}

void add_chunk_option(CLI::App& sub, CodecOptions& o) {
  sub.add_option("--chunk-seconds", o.io.chunk_seconds,
                 "decode long inputs in windows of this length (0 = at once)")
      ->capture_default_str();
}

void encode_job(const CodecRun& r, const Job& job) {
  const auto t0 = std::chrono::steady_clock::now();
  const torch::Tensor wave = load_wave(job, r.m.config, r.m.vae->samples_per_token(), r.m.device);
  const models::VaeFeatures f = r.m.vae->encode(wave, {}, r.o.sample);
  io::TensorMap out;
  for (const auto& [name, t] : f.named()) out[name] = t.contiguous().cpu();
  io::save_safetensors(job.output, out,
                       {{"source", job.input},
                        {"checkpoint", r.o.model.checkpoint},
                        {"sample_rate", std::to_string(r.sample_rate())},
                        {"samples_per_token", std::to_string(r.m.vae->samples_per_token())},
                        {"samples", std::to_string(wave.size(1))},
                        {"z", r.o.sample ? "sampled" : "mu"}});
  const double seconds = wave.size(1) / static_cast<double>(r.sample_rate());
  spdlog::info("{}: {:.2f} s -> {} tokens x {} -> {} ({:.1f}x real time)", job.input, seconds, f.mu.size(1),
               f.mu.size(2), job.output, seconds / seconds_since(t0));
}

void decode_job(const CodecRun& r, const Job& job) {
  const auto t0 = std::chrono::steady_clock::now();
  io::SafetensorsData feats = io::load_safetensors(job.input);
  const std::string& name = r.o.tensor;
  const auto it = feats.tensors.find(name);
  if (it == feats.tensors.end()) throw Error("features '" + job.input + "': no tensor '" + name + "'");
  torch::Tensor z = it->second.to(torch::kFloat32);
  if (z.dim() == 2) z = z.unsqueeze(0);
  const int latent = r.m.config.model.latent_dim();
  if (z.dim() != 3 || z.size(0) != 1 || z.size(2) != latent)
    throw Error("features '" + job.input + "': tensor '" + name + "' is " + c10::str(z.sizes()) +
                ", expected (1, tokens, " + std::to_string(latent) + ")");
  torch::Tensor wave = r.m.vae->decode_chunked(z.to(r.m.device), r.chunk_tokens);
  if (const auto s = feats.metadata.find("samples"); s != feats.metadata.end()) {
    // The source length when the file came from `encode`; anything unparsable is ignored.
    const int64_t n = std::atoll(s->second.c_str());
    if (n > 0 && n < wave.size(1) + r.m.vae->samples_per_token()) wave = fit_length(wave, n);
  }
  write_wave(job.output, wave, r.sample_rate());
  const double seconds = wave.size(1) / static_cast<double>(r.sample_rate());
  spdlog::info("{}: {} tokens -> {:.2f} s -> {} ({:.1f}x real time)", job.input, z.size(1), seconds,
               job.output, seconds / seconds_since(t0));
}

void reconstruct_job(const CodecRun& r, const Job& job) {
  const auto t0 = std::chrono::steady_clock::now();
  const torch::Tensor wave = load_wave(job, r.m.config, r.m.vae->samples_per_token(), r.m.device);
  const models::VaeFeatures f = r.m.vae->encode(wave);
  const torch::Tensor out = fit_length(r.m.vae->decode_chunked(f.mu, r.chunk_tokens), wave.size(1));
  write_wave(job.output, out, r.sample_rate());
  const double seconds = wave.size(1) / static_cast<double>(r.sample_rate());
  spdlog::info("{}: {:.2f} s reconstructed -> {} ({:.1f}x real time)", job.input, seconds, job.output,
               seconds / seconds_since(t0));
}

}  // namespace

void add_codec_commands(CLI::App& app, Context& ctx) {
  auto enc = std::make_shared<CodecOptions>();
  add_codec_command(app, ctx, "encode",
                    "audio -> LoSATok features (z, mu, logvar, embeddings) as safetensors", "audio file",
                    "features .safetensors", ".safetensors", enc, encode_job)
      ->add_flag("--sample", enc->sample, "z = mu + sigma * eps (seeded by `seed`) instead of z = mu");

  auto dec = std::make_shared<CodecOptions>();
  auto* decode = add_codec_command(app, ctx, "decode", "LoSATok latents (safetensors from `encode`) -> audio",
                                   "features .safetensors", "audio file (.wav, .flac, .ogg, ...)", ".wav",
                                   dec, decode_job);
  decode->add_option("--tensor", dec->tensor, "which tensor to decode")->capture_default_str();
  add_chunk_option(*decode, *dec);

  auto rec = std::make_shared<CodecOptions>();
  add_chunk_option(
      *add_codec_command(app, ctx, "reconstruct", "audio -> LoSATok latents (mu) -> audio", "audio file",
                         "audio file (.wav, .flac, .ogg, ...)", ".wav", rec, reconstruct_job),
      *rec);
}

}  // namespace losatok::cli
