// Byte and espeak-ng phoneme tokens for the DiT's text encoder.
#include "losatok/data/text.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "losatok/core/error.h"
#include "losatok/core/logging.h"

extern char** environ;

namespace losatok::data {

std::vector<int64_t> byte_tokens(const std::string& text) {
  std::vector<int64_t> out;
  out.reserve(text.size());
  for (unsigned char c : text) out.push_back(2 + static_cast<int64_t>(c));
  return out;
}

bool espeak_available() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && ::access((dir + "/espeak-ng").c_str(), X_OK) == 0) return true;
  return false;
}

namespace {

// Runs `espeak-ng -q --ipa [--sep=SEP] -v VOICE --stdin`, feeding `text` on stdin; returns stdout.
std::string run_espeak(const std::string& voice, const std::string& separator, const std::string& text) {
  // Close-on-exec: a child spawned by another thread must not inherit these ends (it would hold
  // our stdin writer open and espeak-ng would never see end of input).
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0)
    throw Error(std::string("phonemes: cannot create a pipe for espeak-ng: ") + std::strerror(errno));
  if (::pipe2(out, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(in[0]), ::close(in[1]);
    throw Error(std::string("phonemes: cannot create a pipe for espeak-ng: ") + std::strerror(e));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> args = {"espeak-ng", "-q", "--ipa", "-v", voice, "--stdin"};
  if (!separator.empty()) args.insert(args.begin() + 3, "--sep=" + separator);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "espeak-ng", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    throw Error(
        "phonemes: cannot run espeak-ng (install it: apt-get install espeak-ng), or set "
        "dit.text.tokens=chars");
  }
  // The whole text is written before the answer is read: bounded well below the pipe's buffer.
  const std::string line = text.substr(0, 8192) + "\n";
  std::size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(in[1], line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // espeak-ng exited early (EPIPE: SIGPIPE is ignored): its status says why
    written += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  std::string result;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    result.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("phonemes: espeak-ng -v " + voice + " failed on \"" + text.substr(0, 60) + "\"");
  return result;
}

}  // namespace

Phonemizer::Phonemizer(std::string voice, std::string separator)
    : voice_(std::move(voice)), separator_(std::move(separator)) {
  // A write to an espeak-ng that exited must be an error, not a silent death of the program.
  std::signal(SIGPIPE, SIG_IGN);
  if (!espeak_available())
    throw Error(
        "phonemes: espeak-ng is not installed (apt-get install espeak-ng), or set dit.text.tokens=chars");
}

std::string Phonemizer::operator()(const std::string& text) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (const auto it = memo_.find(text); it != memo_.end()) return it->second;
  }
  const std::string raw = run_espeak(voice_, separator_, text);
  // One line per clause: joined by single spaces, surrounding blanks dropped.
  std::string ipa;
  std::stringstream lines(raw);
  std::string line;
  while (std::getline(lines, line)) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    const auto e = line.find_last_not_of(" \t\r");
    if (!ipa.empty()) ipa += ' ';
    ipa += line.substr(b, e - b + 1);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  memo_.emplace(text, ipa);
  return ipa;
}

TextTokenizer::TextTokenizer(const TextEncoderConfig& config) : config_(config) {
  if (config_.tokens == "phonemes") phonemizer_ = std::make_unique<Phonemizer>(config_.espeak_voice);
}

std::vector<int64_t> TextTokenizer::encode(const std::string& text_in) {
  // A text far beyond the limit is shortened before the phonemizer sees it.
  const std::size_t max_bytes = static_cast<std::size_t>(std::max(1, config_.max_tokens)) * 16;
  const std::string& text = text_in.size() > max_bytes ? text_in.substr(0, max_bytes) : text_in;
  std::vector<int64_t> out = byte_tokens(phonemizer_ ? (*phonemizer_)(text) : text);
  if (static_cast<int>(out.size()) > config_.max_tokens || text.size() < text_in.size()) {
    // Reported a few times per process: training encodes every clip's text.
    static std::atomic<int> reported{0};
    const int n = reported.fetch_add(1);
    if (n < 3)
      spdlog::warn("text of {} bytes is longer than dit.text.max_tokens ({}): cut to \"{}...\"{}",
                   text_in.size(), config_.max_tokens, text_in.substr(0, 40),
                   n == 2 ? " (further cuts are not reported)" : "");
    if (static_cast<int>(out.size()) > config_.max_tokens) out.resize(config_.max_tokens);
  }
  if (out.empty()) out.push_back(kTextFiller);
  return out;
}

namespace {

// Decodes one UTF-8 code point at s[i] (advancing i); invalid bytes read as U+FFFD.
char32_t next_code_point(const std::string& s, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
  if (extra < 0 || i + static_cast<std::size_t>(extra) >= s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = extra == 0 ? c : c & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  i += extra + 1;
  return cp;
}

}  // namespace

int phoneme_symbol_id(char32_t cp) {
  constexpr char32_t kDirect = 0x370;  // Latin, IPA extensions, modifiers, combining marks
  if (cp < kDirect) return 2 + static_cast<int>(cp);
  constexpr int first = 2 + static_cast<int>(kDirect);
  return first + static_cast<int>(cp % static_cast<char32_t>(kPhonemeVocab - first));
}

std::vector<PhonemeUnit> phoneme_units(const std::string& separated) {
  std::vector<PhonemeUnit> out;
  PhonemeUnit unit;
  bool word_start = true;
  const auto flush = [&]() {
    if (unit.empty()) return;
    if (word_start) unit.insert(unit.begin(), kPhonemeWordStart);
    word_start = false;
    if (static_cast<int>(unit.size()) > kMaxPhonemeSymbols) unit.resize(kMaxPhonemeSymbols);
    out.push_back(std::move(unit));
    unit.clear();
  };
  for (std::size_t i = 0; i < separated.size();) {
    const char32_t cp = next_code_point(separated, i);
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') {
      flush();
      word_start = true;
    } else if (cp == '_') {
      flush();
    } else {
      unit.push_back(phoneme_symbol_id(cp));
    }
  }
  flush();
  return out;
}

PhonemeTokenizer::PhonemeTokenizer(const std::string& source, const std::string& voice) : source_(source) {
  if (source_ == "espeak") phonemizer_ = std::make_unique<Phonemizer>(voice, "_");
}

std::vector<PhonemeUnit> PhonemeTokenizer::units(const std::string& text, const std::string& phonemes) {
  std::vector<PhonemeUnit> u;
  if (!phonemes.empty())
    u = phoneme_units(phonemes);
  else if (phonemizer_)
    u = phoneme_units((*phonemizer_)(text.substr(0, 8192)));
  else
    throw Error("tts: dit.tts.phonemes is manifest, but a clip or prompt has no \"phonemes\" (\"" +
                text.substr(0, 40) + "\")");
  return u;
}

}  // namespace losatok::data
