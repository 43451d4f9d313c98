// metrics.jsonl and TensorBoard event files (TFRecord framing around hand-encoded Event protos:
// the few fields TensorBoard reads for scalars and audio).
#include "losatok/train/metrics.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"

namespace fs = std::filesystem;

namespace losatok::train {

namespace {

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

uint32_t masked_crc(const void* data, std::size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Protobuf wire format: just what the Event / Summary messages need.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
template <class T>
void put_fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(b, sizeof(T));
}
void put_tag(std::string& out, int field, int wire) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | wire);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string event_header(int64_t step) {
  std::string e;
  put_tag(e, 1, 1);
  put_fixed<double>(e, now_seconds());
  put_tag(e, 2, 0);
  put_varint(e, static_cast<uint64_t>(step));
  return e;
}

std::string summary_event(int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);
  std::string e = event_header(step);
  put_bytes(e, 5, summary);
  return e;
}

std::string wav_pcm16(const std::vector<float>& samples, int sample_rate) {
  std::string w = "RIFF";
  const uint32_t data_bytes = static_cast<uint32_t>(samples.size() * 2);
  put_fixed<uint32_t>(w, 36 + data_bytes);
  w += "WAVEfmt ";
  put_fixed<uint32_t>(w, 16);
  put_fixed<uint16_t>(w, 1);  // PCM
  put_fixed<uint16_t>(w, 1);  // mono
  put_fixed<uint32_t>(w, static_cast<uint32_t>(sample_rate));
  put_fixed<uint32_t>(w, static_cast<uint32_t>(sample_rate * 2));
  put_fixed<uint16_t>(w, 2);
  put_fixed<uint16_t>(w, 16);
  w += "data";
  put_fixed<uint32_t>(w, data_bytes);
  for (float s : samples) {
    const float c = std::isfinite(s) ? std::max(-1.0f, std::min(1.0f, s)) : 0.0f;
    put_fixed<int16_t>(w, static_cast<int16_t>(std::lround(c * 32767.0f)));
  }
  return w;
}

// Reader side.
struct Cursor {
  const std::string& s;
  std::size_t pos;
  std::size_t end;
  bool done() const { return pos >= end; }
  uint64_t varint(const std::string& where) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) throw Error(where + ": truncated varint");
      const auto b = static_cast<uint8_t>(s[pos++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw Error(where + ": bad varint");
  }
  template <class T>
  T fixed(const std::string& where) {
    if (pos + sizeof(T) > end) throw Error(where + ": truncated field");
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  Cursor sub(const std::string& where) {
    const uint64_t n = varint(where);
    if (pos + n > end) throw Error(where + ": truncated message");
    Cursor c{s, pos, pos + n};
    pos += n;
    return c;
  }
  void skip(int wire, const std::string& where) {
    if (wire == 0)
      varint(where);
    else if (wire == 1)
      fixed<uint64_t>(where);
    else if (wire == 5)
      fixed<uint32_t>(where);
    else if (wire == 2)
      sub(where);
    else
      throw Error(where + ": unsupported wire type " + std::to_string(wire));
  }
};

}  // namespace

uint32_t crc32c(const void* data, std::size_t size) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  uint32_t c = 0xffffffffu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (std::size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = (fs::path(dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) +
                            "." + host + "." + std::to_string(::getpid()) + ".losatok"))
              .string();
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) throw Error("tensorboard: cannot write " + path_);
  std::string e = event_header(0);
  put_bytes(e, 3, "brain.Event:2");
  write_event(e);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::write_event(const std::string& event) {
  std::string rec;
  put_fixed<uint64_t>(rec, event.size());
  put_fixed<uint32_t>(rec, masked_crc(rec.data(), 8));
  rec += event;
  put_fixed<uint32_t>(rec, masked_crc(event.data(), event.size()));
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size())
    throw Error("tensorboard: write failed: " + path_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  std::string v;
  put_bytes(v, 1, tag);
  put_tag(v, 2, 5);
  put_fixed<float>(v, static_cast<float>(value));
  write_event(summary_event(step, v));
}

void TensorBoardWriter::add_audio(const std::string& tag, const std::vector<float>& samples, int sample_rate,
                                  int64_t step) {
  std::string a;
  put_tag(a, 1, 5);
  put_fixed<float>(a, static_cast<float>(sample_rate));
  put_tag(a, 2, 0);
  put_varint(a, 1);
  put_tag(a, 3, 0);
  put_varint(a, samples.size());
  put_bytes(a, 4, wav_pcm16(samples, sample_rate));
  put_bytes(a, 5, "audio/wav");
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 6, a);
  write_event(summary_event(step, v));
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_) != 0)
    throw Error("tensorboard: writing " + path_ + " failed: " + std::strerror(errno));
}

std::vector<TensorBoardRecord> read_tensorboard_events(const std::string& path) {
  const std::string data = read_file(path);
  std::vector<TensorBoardRecord> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    const std::string where = path + " at byte " + std::to_string(pos);
    if (pos + 12 > data.size()) throw Error(where + ": truncated record header");
    uint64_t len;
    uint32_t len_crc;
    std::memcpy(&len, data.data() + pos, 8);
    std::memcpy(&len_crc, data.data() + pos + 8, 4);
    if (len_crc != masked_crc(data.data() + pos, 8)) throw Error(where + ": record length CRC mismatch");
    if (pos + 12 + len + 4 > data.size()) throw Error(where + ": truncated record");
    uint32_t data_crc;
    std::memcpy(&data_crc, data.data() + pos + 12 + len, 4);
    if (data_crc != masked_crc(data.data() + pos + 12, len))
      throw Error(where + ": record data CRC mismatch");
    Cursor ev{data, pos + 12, pos + 12 + len};
    pos += 12 + len + 4;
    int64_t step = 0;
    std::vector<TensorBoardRecord> values;
    while (!ev.done()) {
      const uint64_t key = ev.varint(where);
      const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
      if (field == 2 && wire == 0) {
        step = static_cast<int64_t>(ev.varint(where));
      } else if (field == 5 && wire == 2) {
        Cursor summary = ev.sub(where);
        while (!summary.done()) {
          const uint64_t k = summary.varint(where);
          if ((k >> 3) != 1 || (k & 7) != 2) {
            summary.skip(static_cast<int>(k & 7), where);
            continue;
          }
          Cursor value = summary.sub(where);
          TensorBoardRecord r;
          while (!value.done()) {
            const uint64_t vk = value.varint(where);
            const int f = static_cast<int>(vk >> 3), w = static_cast<int>(vk & 7);
            if (f == 1 && w == 2) {
              Cursor t = value.sub(where);
              r.tag = data.substr(t.pos, t.end - t.pos);
            } else if (f == 2 && w == 5) {
              r.value = value.fixed<float>(where);
            } else if (f == 6 && w == 2) {
              Cursor a = value.sub(where);
              while (!a.done()) {
                const uint64_t ak = a.varint(where);
                if ((ak >> 3) == 4 && (ak & 7) == 2) {
                  Cursor b = a.sub(where);
                  r.audio_bytes = data.substr(b.pos, b.end - b.pos);
                } else {
                  a.skip(static_cast<int>(ak & 7), where);
                }
              }
            } else {
              value.skip(w, where);
            }
          }
          values.push_back(std::move(r));
        }
      } else {
        ev.skip(wire, where);
      }
    }
    for (auto& r : values) {
      r.step = step;
      out.push_back(std::move(r));
    }
  }
  return out;
}

MetricsLogger::MetricsLogger(const std::string& run_dir, bool tensorboard, int64_t keep_until_step) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  jsonl_path_ = (fs::path(run_dir) / "metrics.jsonl").string();
  // A resumed run drops what the interrupted one logged past its checkpoint; any start drops a
  // line cut short by a crash or a full disk, so every line of the file stays JSON.
  const bool regular = fs::is_regular_file(jsonl_path_, ec);
  const bool cut = regular && fs::file_size(jsonl_path_, ec) > 0 && [&] {
    std::ifstream in(jsonl_path_, std::ios::binary);
    in.seekg(-1, std::ios::end);
    return in.get() != '\n';
  }();
  if ((keep_until_step >= 0 || cut) && regular) {
    std::ifstream in(jsonl_path_);
    std::string line, kept;
    int64_t dropped = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      bool keep = false;
      try {
        const auto j = nlohmann::json::parse(line);
        keep = keep_until_step < 0 || j.value("step", int64_t{-1}) <= keep_until_step;
      } catch (const std::exception&) {  // a line cut by a crash or a full disk
      }
      if (keep)
        kept += line + "\n";
      else
        ++dropped;
    }
    if (dropped > 0) {
      write_file_atomic(jsonl_path_, kept);
      spdlog::info("metrics: dropped {} line(s) of {}{}", dropped, jsonl_path_,
                   keep_until_step >= 0 ? fmt::format(" logged after step {} or cut short", keep_until_step)
                                        : std::string(" cut short"));
    }
  }
  jsonl_ = std::fopen(jsonl_path_.c_str(), "a");
  if (!jsonl_) throw Error("metrics: cannot write " + jsonl_path_);
  if (tensorboard) tb_ = std::make_unique<TensorBoardWriter>((fs::path(run_dir) / "tensorboard").string());
}

MetricsLogger::~MetricsLogger() {
  if (jsonl_) std::fclose(jsonl_);
}

void MetricsLogger::log(int64_t step, const std::map<std::string, double>& values) {
  nlohmann::json j;
  j["step"] = step;
  j["time"] = std::round(now_seconds() * 1000) / 1000;
  for (const auto& [k, v] : values) {
    if (std::isfinite(v))
      j[k] = v;
    else
      j[k] = std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
    if (tb_) tb_->add_scalar(k, v, step);
  }
  // Written with write(2), not stdio: a short write (a full disk) is seen here, and the file is
  // cut back to its last whole line before the error stops the run.
  const std::string line = j.dump() + "\n";
  const int fd = fileno(jsonl_);
  const off_t before = ::lseek(fd, 0, SEEK_END);
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "nothing written";
      if (before >= 0 && ::ftruncate(fd, before) != 0) {
        // The next start drops the cut line.
      }
      throw Error("metrics: writing " + jsonl_path_ + " failed at step " + std::to_string(step) + ": " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  if (tb_) tb_->flush();
}

void MetricsLogger::audio(const std::string& tag, const std::vector<float>& samples, int sample_rate,
                          int64_t step) {
  if (tb_) tb_->add_audio(tag, samples, sample_rate, step);
}

void MetricsLogger::flush() {
  if (tb_) tb_->flush();
}

}  // namespace losatok::train
