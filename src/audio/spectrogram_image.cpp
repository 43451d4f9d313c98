// PNG encoding (stored deflate) and the spectrogram colour map.
#include "losatok/audio/spectrogram_image.h"

#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstring>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"

namespace losatok::audio {

namespace {

uint32_t crc32(const std::string& data, uint32_t c = 0xffffffffu) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t v = i;
      for (int k = 0; k < 8; ++k) v = (v & 1) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
      t[i] = v;
    }
    return t;
  }();
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c;
}

void put_be32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

void chunk(std::string& png, const char* type, const std::string& data) {
  put_be32(png, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  png += body;
  put_be32(png, crc32(body) ^ 0xffffffffu);
}

// A perceptually ordered dark-blue -> purple -> orange -> light-yellow ramp.
std::array<uint8_t, 3> colour(double t) {
  static const double stops[][3] = {
      {0, 0, 4}, {60, 15, 110}, {150, 40, 120}, {240, 100, 60}, {252, 250, 170}};
  t = std::min(1.0, std::max(0.0, t)) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  std::array<uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k)
    c[k] = static_cast<uint8_t>(std::lround(stops[i][k] * (1 - f) + stops[i + 1][k] * f));
  return c;
}

}  // namespace

std::string encode_png_rgb(int width, int height, const std::string& rgb) {
  if (width <= 0 || height <= 0 || rgb.size() != static_cast<std::size_t>(width) * height * 3)
    throw Error("png: pixel data does not match " + std::to_string(width) + " x " + std::to_string(height));
  std::string raw;  // each row: filter byte 0 + pixels
  raw.reserve(static_cast<std::size_t>(height) * (width * 3 + 1));
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(rgb, static_cast<std::size_t>(y) * width * 3, static_cast<std::size_t>(width) * 3);
  }
  std::string z = "\x78\x01";  // zlib header, no compression
  for (std::size_t pos = 0; pos < raw.size() || pos == 0; pos += 65535) {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    z.push_back(pos + n >= raw.size() ? 1 : 0);  // BFINAL, BTYPE 00
    z.push_back(static_cast<char>(n & 0xff));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xff));
    z.push_back(static_cast<char>((~n >> 8) & 0xff));
    z.append(raw, pos, n);
    if (raw.empty()) break;
  }
  uint32_t a = 1, b = 0;  // Adler-32
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(width));
  put_be32(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", "");
  return png;
}

void write_spectrogram_png(const std::string& path, const torch::Tensor& log_spec, double range, int scale) {
  if (log_spec.dim() != 2 || log_spec.numel() == 0)
    throw Error("spectrogram image: expected a (bins, frames) matrix");
  const torch::Tensor s = log_spec.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double top = s.max().item<double>();
  const int bins = static_cast<int>(s.size(0)), frames = static_cast<int>(s.size(1));
  const int w = frames * scale, h = bins * scale;
  const double* p = s.data_ptr<double>();
  std::string rgb(static_cast<std::size_t>(w) * h * 3, '\0');
  for (int y = 0; y < h; ++y) {
    const int bin = bins - 1 - y / scale;
    for (int x = 0; x < w; ++x) {
      const auto c = colour((p[static_cast<int64_t>(bin) * frames + x / scale] - (top - range)) / range);
      std::memcpy(&rgb[(static_cast<std::size_t>(y) * w + x) * 3], c.data(), 3);
    }
  }
  write_file_atomic(path, encode_png_rgb(w, h, rgb));
}

}  // namespace losatok::audio
