// pocketsphinx_batch over a temporary folder of 16 kHz PCM WAVs, and the WER arithmetic.
#include "losatok/eval/asr.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"

namespace fs = std::filesystem;

namespace losatok::eval {

namespace {

// A private temporary folder, removed with everything in it.
struct ScratchDir {
  ScratchDir() {
    std::string t = (fs::temp_directory_path() / "losatok-asr-XXXXXX").string();
    if (!::mkdtemp(t.data())) throw Error("asr: cannot create a temporary folder");
    path = t;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

}  // namespace

std::vector<std::string> normalize_words(const std::string& text) {
  std::vector<std::string> words;
  std::string w;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '\'') {
      w += static_cast<char>(std::tolower(c));
    } else if (!w.empty()) {
      words.push_back(w);
      w.clear();
    }
  }
  if (!w.empty()) words.push_back(w);
  return words;
}

int64_t edit_distance(const std::vector<std::string>& r, const std::vector<std::string>& h) {
  std::vector<int64_t> prev(h.size() + 1), cur(h.size() + 1);
  for (std::size_t j = 0; j <= h.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (std::size_t i = 1; i <= r.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (std::size_t j = 1; j <= h.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r[i - 1] == h[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[h.size()];
}

double WerResult::utterance_mean() const {
  double sum = 0;
  int64_t n = 0;
  for (std::size_t i = 0; i < clip_errors.size() && i < clip_words.size(); ++i)
    if (clip_words[i] > 0)
      sum += static_cast<double>(clip_errors[i]) / static_cast<double>(clip_words[i]), ++n;
  return n > 0 ? sum / static_cast<double>(n) : std::nan("");
}

Recognizer Recognizer::find() {
  Recognizer r;
  r.binary_ = find_program("pocketsphinx_batch");
  const char* env = std::getenv("LOSATOK_POCKETSPHINX_MODEL");
  r.model_ = env && *env ? env : "/usr/share/pocketsphinx/model/en-us";
  if (r.binary_.empty())
    r.why_ = "pocketsphinx_batch not found (apt install pocketsphinx pocketsphinx-en-us)";
  else if (!fs::exists(fs::path(r.model_) / "en-us.lm.bin"))
    r.why_ = "no pocketsphinx model in " + r.model_ + " (apt install pocketsphinx-en-us)";
  return r;
}

WerResult Recognizer::word_error_rate(const std::vector<data::ManifestEntry>& clips) const {
  if (!available()) throw Error("asr: " + why_);
  WerResult out;
  if (clips.empty()) return out;
  ScratchDir dir;
  {
    std::ofstream ctl(dir.path / "clips.ctl");
    for (std::size_t i = 0; i < clips.size(); ++i) {
      // The acoustic model is 16 kHz whatever the audio's rate.
      const data::ManifestEntry& e = clips[i];
      const std::vector<float> wave = audio::load_audio(e.audio, 16000, e.offset, e.duration);
      audio::write_wav((dir.path / ("clip" + std::to_string(i) + ".wav")).string(), wave, 16000);
      ctl << "clip" << i << "\n";
    }
  }
  const fs::path m = model_;
  const std::string cmd =
      shell_quote(binary_) + " -adcin yes -adchdr 44 -cepext .wav -cepdir " + shell_quote(dir.path.string()) +
      " -ctl " + shell_quote((dir.path / "clips.ctl").string()) + " -hyp " +
      shell_quote((dir.path / "clips.hyp").string()) + " -hmm " + shell_quote((m / "en-us").string()) +
      " -lm " + shell_quote((m / "en-us.lm.bin").string()) + " -dict " +
      shell_quote((m / "cmudict-en-us.dict").string()) + " -logfn " +
      shell_quote((dir.path / "log").string()) + " > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw Error("asr: pocketsphinx_batch failed (" + binary_ + ")");
  // "words words (uttid score)" per line.
  std::map<std::string, std::string> hyp;
  std::ifstream in(dir.path / "clips.hyp");
  std::string line;
  while (std::getline(in, line)) {
    const auto open = line.rfind('(');
    if (open == std::string::npos) continue;
    std::istringstream id(line.substr(open + 1));
    std::string utt;
    id >> utt;
    hyp[utt] = line.substr(0, open);
  }
  for (std::size_t i = 0; i < clips.size(); ++i) {
    const auto ref = normalize_words(clips[i].text);
    const auto h = normalize_words(hyp["clip" + std::to_string(i)]);
    out.errors += edit_distance(ref, h);
    out.words += static_cast<int64_t>(ref.size());
    std::string joined;
    for (const auto& w : h) joined += (joined.empty() ? "" : " ") + w;
    out.hypotheses.push_back(joined);
    ++out.clips;
  }
  out.wer = out.words > 0 ? static_cast<double>(out.errors) / static_cast<double>(out.words) : 0.0;
  return out;
}

}  // namespace losatok::eval
