// Tar archives and WebDataset shards: a shard Python's tarfile wrote (every header format a
// shard may use) reads back member by member and groups as webdataset groups it; write_tar round
// trips; damaged archives are one-line errors with the byte; audio decodes from member bytes
// exactly as from the same file on disk.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/data/webdataset.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::data;
using losatok::test::TempDir;

namespace {

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// The tar header checksum, recomputed after a test edits a header field.
void fix_checksum(std::string& tar, std::size_t header) {
  std::memset(&tar[header + 148], ' ', 8);
  unsigned sum = 0;
  for (std::size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>(tar[header + i]);
  std::snprintf(&tar[header + 148], 8, "%06o", sum);
}

std::vector<float> tone(double freq, int rate, int n, int channels = 1) {
  std::vector<float> x(static_cast<std::size_t>(n * channels));
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < channels; ++c)
      x[static_cast<std::size_t>(i * channels + c)] =
          0.4f * static_cast<float>(std::sin(2 * M_PI * freq * (c + 1) * i / rate));
  return x;
}

void expect_same_audio(const audio::AudioBuffer& a, const audio::AudioBuffer& b) {
  EXPECT_EQ(a.sample_rate, b.sample_rate);
  EXPECT_EQ(a.channels, b.channels);
  ASSERT_EQ(a.samples.size(), b.samples.size());
  EXPECT_EQ(std::memcmp(a.samples.data(), b.samples.data(), a.samples.size() * sizeof(float)), 0);
}

}  // namespace

TEST(Webdataset, ReadsPythonTarfileShardMemberByMember) {
  const auto expected = test::read_json(test::fixture("wds_python.json"))["members"];
  const auto members = read_tar(test::fixture("wds_python.tar"));
  // ustar, ustar with a prefix, GNU long name, pax path (UTF-8); the folder, the symbolic and the
  // hard link are not members; the pax global header changes nothing.
  ASSERT_EQ(members.size(), expected.size());
  ASSERT_EQ(members.size(), 12u);
  for (std::size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ(members[i].name, expected[i]["name"].get<std::string>()) << i;
    EXPECT_EQ(members[i].data, unhex(expected[i]["hex"].get<std::string>())) << members[i].name;
  }
  EXPECT_EQ(members[1].name, "clips/s1.json");
  EXPECT_EQ(members[1].data, "{\"label\": 17}");
  EXPECT_EQ(members[7].name, "clips/" + std::string(130, 'p') +
                                 "/\xc3\xbcn\xc3\xaf"
                                 "code-s5.txt");  // pax path

  // The streaming reader yields the same, one at a time.
  TarReader reader(test::fixture("wds_python.tar"));
  TarMember m;
  std::size_t n = 0;
  while (reader.next(m)) EXPECT_EQ(m.name, members[n++].name);
  EXPECT_EQ(n, members.size());
  EXPECT_FALSE(reader.next(m));
}

TEST(Webdataset, GroupsSamplesAsWebdatasetDoes) {
  const auto expected = test::read_json(test::fixture("wds_python.json"));
  std::map<std::string, std::string> data;
  for (const auto& m : expected["members"])
    data[m["name"].get<std::string>()] = unhex(m["hex"].get<std::string>());
  const std::string shard = test::fixture("wds_python.tar");
  const auto samples = read_wds_shard(shard);
  const auto& want = expected["samples"];
  ASSERT_EQ(samples.size(), want.size());
  ASSERT_EQ(samples.size(), 6u);  // s1 .. s5 and "clips/" (from "clips/.hidden")
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].key, want[i]["key"].get<std::string>());
    EXPECT_EQ(samples[i].shard, shard);
    ASSERT_EQ(samples[i].files.size(), want[i]["files"].size()) << samples[i].key;
    for (const auto& [ext, name] : want[i]["files"].items()) {
      ASSERT_TRUE(samples[i].files.count(ext)) << samples[i].key << " ." << ext;
      EXPECT_EQ(samples[i].files.at(ext), data.at(name.get<std::string>()));
    }
  }
  EXPECT_EQ(samples[0].key, "clips/s1");
  EXPECT_TRUE(samples[0].files.count("seg.npy"));  // the extension runs from the basename's first dot
  EXPECT_TRUE(samples[1].files.count("flac"));     // "s2.FLAC", lower-cased
  EXPECT_EQ(samples[5].key, "clips/");
  EXPECT_EQ(wds_audio_extension(samples[0]), "wav");
  EXPECT_EQ(wds_audio_extension(samples[1]), "flac");
  EXPECT_EQ(wds_audio_extension(samples[2]), "");

  WdsReader reader(shard);
  WdsSample s;
  std::size_t n = 0;
  while (reader.next(s)) {
    EXPECT_EQ(s.key, samples[n].key);
    EXPECT_EQ(s.files, samples[n].files);
    ++n;
  }
  EXPECT_EQ(n, samples.size());
}

TEST(Webdataset, WriteTarRoundTripsAndIsDeterministic) {
  TempDir tmp;
  std::string binary(1000, '\0');
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 7);
  const std::vector<TarMember> members = {
      {"a.json", "{\"label\": 3}"},
      {"empty.txt", ""},
      {"block.bin", std::string(512, 'x')},
      {"block1.bin", std::string(513, 'y')},
      {std::string(100, 'n'), "exactly 100 bytes of name"},
      {"deep/" + std::string(250, 'd') + "/k.wav", binary},
      {"\xc3\xbc.txt", "utf-8 name"},
  };
  const std::string path = tmp.path("out.tar"), again = tmp.path("again.tar");
  write_tar(path, members);
  write_tar(again, members);
  const std::string bytes = test::read_bytes(path);
  EXPECT_EQ(bytes, test::read_bytes(again));
  EXPECT_EQ(bytes.size() % 512, 0u);
  EXPECT_EQ(bytes.compare(257, 8,
                          std::string("ustar\0"
                                      "00",
                                      8)),
            0);  // POSIX ustar
  const auto back = read_tar(path);
  ASSERT_EQ(back.size(), members.size());
  for (std::size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ(back[i].name, members[i].name);
    EXPECT_EQ(back[i].data, members[i].data);
  }
  // Header and data blocks of each member (the long name's 'L' header and its name block before
  // it), then the two end blocks.
  EXPECT_EQ(bytes.size(), 512u * (2 + 1 + 2 + 3 + 2 + (2 + 1 + 2) + 2 + 2));

  test::expect_error(
      [&] {
        write_tar(tmp.path("bad.tar"), {{"", "x"}});
      },
      {"bad.tar", "member 0", "empty name"});
  test::expect_error(
      [&] {
        write_tar(tmp.path("bad.tar"), {{"a", "x"}, {std::string("b\0c", 3), "y"}});
      },
      {"member 1", "NUL"});
}

TEST(Webdataset, DamagedArchivesAreOneLineErrorsWithTheByte) {
  TempDir tmp;
  const std::string good = test::read_bytes(test::fixture("wds_python.tar"));
  const std::size_t wav_header = good.find(std::string("clips/s1.wav\0", 13));
  ASSERT_NE(wav_header, std::string::npos);
  ASSERT_EQ(wav_header % 512, 0u);
  const std::size_t wav_data = wav_header + 512;
  const auto write = [&](const std::string& name, const std::string& bytes) {
    test::write_bytes(tmp.path(name), bytes);
    return tmp.path(name);
  };

  // A partial download: cut inside a member's data, inside a header, or before the end blocks.
  const std::string cut_data = write("cut_data.tar", good.substr(0, wav_data + 1000));
  test::expect_error([&] { read_tar(cut_data); }, {cut_data, "truncated", "'clips/s1.wav' of 3244 bytes",
                                                   "at byte " + std::to_string(wav_data)});
  const std::string cut_header = write("cut_header.tar", good.substr(0, wav_header + 100));
  test::expect_error([&] { read_tar(cut_header); },
                     {cut_header, "truncated", "100 of 512", "at byte " + std::to_string(wav_header)});
  write_tar(tmp.path("whole.tar"), {{"a.txt", "hello"}});
  const std::string whole = test::read_bytes(tmp.path("whole.tar"));
  const std::string no_end = write("no_end.tar", whole.substr(0, whole.size() - 1024));
  test::expect_error([&] { read_tar(no_end); }, {no_end, "end-of-archive", "at byte 1024"});
  // WdsReader reports the same.
  test::expect_error([&] { read_wds_shard(cut_data); }, {cut_data, "truncated"});

  // A flipped byte in a header's name.
  std::string flipped = good;
  flipped[wav_header + 7] = 'X';
  const std::string bad_sum = write("bad_sum.tar", flipped);
  test::expect_error([&] { read_tar(bad_sum); },
                     {bad_sum, "bad header checksum", "at byte " + std::to_string(wav_header)});
  // A header (with a right checksum) claiming more data than the file has.
  std::string huge = whole;
  std::memcpy(&huge[124], "77777777777", 11);
  fix_checksum(huge, 0);
  const std::string too_big = write("too_big.tar", huge);
  test::expect_error([&] { read_tar(too_big); },
                     {too_big, "'a.txt' of 8589934591 bytes runs past the end", "at byte 512"});
  std::string not_octal = whole;
  std::memcpy(&not_octal[124], "0000000009a", 11);
  fix_checksum(not_octal, 0);
  const std::string bad_size = write("bad_size.tar", not_octal);
  test::expect_error([&] { read_tar(bad_size); }, {bad_size, "size field", "at byte 0"});

  const std::string empty = write("empty.tar", "");
  test::expect_error([&] { read_tar(empty); }, {empty, "empty file"});
  const std::string gz =
      write("shard.tar.gz", std::string("\x1f\x8b\x08\x00", 4) + std::string(1020, '\x01'));
  test::expect_error([&] { read_tar(gz); }, {gz, "gzip"});
  test::expect_error([&] { read_tar(tmp.path("missing.tar")); }, {"missing.tar", "does not exist"});

  // Two members of one sample with the same (lower-cased) extension, as webdataset refuses.
  write_tar(tmp.path("dup.tar"), {{"k1.wav", "a"}, {"k1.json", "{}"}, {"k1.JSON", "{}"}});
  test::expect_error([&] { read_wds_shard(tmp.path("dup.tar")); }, {"dup.tar", "'k1'", "two 'json' members"});
}

TEST(Webdataset, DecodeAudioFromMemberBytesEqualsReadAudioOfTheFile) {
  TempDir tmp;
  const auto members = read_tar(test::fixture("wds_python.tar"));
  for (const std::string& name : {std::string("clips/s1.wav"), std::string("clips/s2.FLAC")}) {
    const auto it =
        std::find_if(members.begin(), members.end(), [&](const TarMember& m) { return m.name == name; });
    ASSERT_NE(it, members.end());
    const std::string file = tmp.path(name.substr(6));
    test::write_bytes(file, it->data);
    const audio::AudioBuffer from_bytes = audio::decode_audio(it->data, "wds_python.tar: " + name);
    expect_same_audio(from_bytes, audio::read_audio(file));
    EXPECT_EQ(from_bytes.sample_rate, 16000);
    EXPECT_EQ(from_bytes.frames(), name == "clips/s1.wav" ? 1600 : 2400);
  }
  // Stereo OGG/Vorbis and MP3 as our encoder writes them.
  for (const char* ext : {"ogg", "mp3", "flac"}) {
    const std::string file = tmp.path(std::string("tone.") + ext);
    const auto x = tone(440, 44100, 22050, 2);
    audio::write_audio(file, x.data(), 22050, 2, 44100);
    const audio::AudioBuffer from_bytes = audio::decode_audio(test::read_bytes(file), ext);
    expect_same_audio(from_bytes, audio::read_audio(file));
    EXPECT_EQ(from_bytes.channels, 2);
    EXPECT_GT(from_bytes.frames(), 20000);
  }

  // The same checks as read_audio, naming `what`.
  const std::string what = "esc50/wds-audio-fold-1-000000.tar: 1-100032-A-0.wav";
  test::expect_error([&] { audio::decode_audio(std::string(4096, 'z'), what); }, {what, "cannot decode"});
  test::expect_error([&] { audio::decode_audio("", what); }, {what, "empty"});
  const auto x = tone(440, 16000, 16000);
  audio::write_audio(tmp.path("full.flac"), x.data(), 16000, 1, 16000);
  const std::string flac = test::read_bytes(tmp.path("full.flac"));
  test::expect_error([&] { audio::decode_audio(flac.substr(0, flac.size() / 2), what); },
                     {what, "is truncated"});
  audio::write_audio(tmp.path("ok.wav"), x.data(), 16000, 1, 16000);
  std::string wav = test::read_bytes(tmp.path("ok.wav"));
  const std::size_t fmt = wav.find("fmt ");
  ASSERT_NE(fmt, std::string::npos);
  wav[fmt + 8 + 12] = 0;  // block align 0, 7-bit samples
  wav[fmt + 8 + 13] = 0;
  wav[fmt + 8 + 14] = 7;
  test::expect_error([&] { audio::decode_audio(wav, what); }, {what, "implausible header"});
}

TEST(Webdataset, GlobShardsMatchesLikePathGlob) {
  TempDir tmp;
  for (const char* name : {"wds-audio-fold-1-000001.tar", "wds-audio-fold-1-000000.tar",
                           "wds-audio-fold-10-000000.tar", "libricount_fold02.tar", "libricount_fold12.tar",
                           ".wds-audio-fold-1-x.tar", "wds-audio-fold-1-000000.tar.tmp"})
    test::write_text(tmp.path(name), "x");
  std::filesystem::create_directories(tmp.path("wds-audio-fold-1-dir.tar"));
  const std::string dir = tmp.dir().string();
  EXPECT_EQ(glob_shards(dir, "wds-audio-fold-1-*.tar"),
            (std::vector<std::string>{tmp.path("wds-audio-fold-1-000000.tar"),
                                      tmp.path("wds-audio-fold-1-000001.tar")}));
  EXPECT_EQ(glob_shards(dir, "libricount_fold0?.tar"),
            std::vector<std::string>{tmp.path("libricount_fold02.tar")});
  EXPECT_EQ(glob_shards(dir, "libricount_fold02.tar"),
            std::vector<std::string>{tmp.path("libricount_fold02.tar")});
  EXPECT_EQ(glob_shards(dir, "*-fold-1-x.tar"),
            std::vector<std::string>{tmp.path(".wds-audio-fold-1-x.tar")});
  test::expect_error([&] { glob_shards(dir, "gtzan_fold_3_*.tar"); }, {dir, "'gtzan_fold_3_*.tar'"});
  test::expect_error([&] { glob_shards(tmp.path("nowhere"), "*.tar"); }, {"nowhere", "does not exist"});
}
