// Spectrogram pictures for validation samples: a (bins, frames) log-magnitude matrix as an
// RGB PNG (low frequencies at the bottom), written without an image library.
#pragma once

#include <torch/types.h>

#include <string>

namespace losatok::audio {

// Colours span [max - range_db_equivalent, max] of `log_spec` (natural-log units: 80 dB is
// about 18.4); `scale` repeats each pixel so short clips stay visible.
void write_spectrogram_png(const std::string& path, const torch::Tensor& log_spec, double range = 18.4,
                           int scale = 2);

// A PNG file image of 8-bit RGB pixels (row-major, top row first), stored uncompressed inside
// zlib's "stored" blocks.
std::string encode_png_rgb(int width, int height, const std::string& rgb);

}  // namespace losatok::audio
