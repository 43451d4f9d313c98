// The JSON Lines manifest reader.
#include <gtest/gtest.h>

#include "losatok/data/manifest.h"
#include "test_util.h"

using namespace losatok;

TEST(Manifest, ReadsFieldsAndResolvesRelativePaths) {
  test::TempDir dir;
  test::write_text(dir.path("m.jsonl"),
                   "{\"audio\": \"a/x.wav\", \"text\": \"hello\", \"domain\": \"speech\", \"duration\": 3.5, "
                   "\"offset\": 1, \"split\": \"train\", \"label\": \"dog\"}\n"
                   "\n"
                   "{\"audio\": \"/abs/y.flac\"}\n");
  const auto m = data::read_manifest(dir.path("m.jsonl"));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].audio, dir.path("a/x.wav"));
  EXPECT_EQ(m[0].text, "hello");
  EXPECT_EQ(m[0].domain, "speech");
  EXPECT_EQ(m[0].label, "dog");
  EXPECT_EQ(m[0].split, "train");
  EXPECT_DOUBLE_EQ(m[0].duration, 3.5);
  EXPECT_DOUBLE_EQ(m[0].offset, 1.0);
  EXPECT_EQ(m[1].audio, "/abs/y.flac");
  EXPECT_EQ(m[1].line, 3);
  EXPECT_LT(m[1].duration, 0);
}

TEST(Manifest, BadLinesNameTheFileAndLine) {
  test::TempDir dir;
  const auto path = dir.path("m.jsonl");
  test::write_text(path, "{\"audio\": \"x.wav\"}\n{\"text\": \"no audio\"}\n");
  test::expect_error([&] { data::read_manifest(path); }, {"m.jsonl", "line 2", "audio"});
  test::write_text(path, "{\"audio\": \"x.wav\"\n");
  test::expect_error([&] { data::read_manifest(path); }, {"line 1", "JSON"});
  test::write_text(path, "{\"audio\": \"x.wav\", \"duration\": \"long\"}\n");
  test::expect_error([&] { data::read_manifest(path); }, {"line 1", "duration"});
  test::expect_error([&] { data::read_manifest(dir.path("missing.jsonl")); }, {"missing.jsonl"});
}

TEST(Manifest, BoundsAndEmptyOrNonFileManifestsAreErrorsNamingIt) {
  test::TempDir dir;
  const auto path = dir.path("m.jsonl");
  // Not a file: a device grows without end, a folder reads as nothing.
  test::expect_error([] { data::read_manifest("/dev/zero"); }, {"/dev/zero", "not a regular file"});
  test::expect_error([&] { data::read_manifest(dir.path("")); }, {"is a folder"});
  test::write_text(path, "\n  \n");
  test::expect_error([&] { data::read_manifest(path); }, {"m.jsonl", "has no clips"});
  // One line over the limit (a file without newlines), after a good one.
  test::write_text(path, "{\"audio\": \"x.wav\"}\n{\"audio\": \"" +
                             std::string(data::kMaxManifestLineBytes, 'a') + "\"}\n");
  test::expect_error([&] { data::read_manifest(path); }, {"m.jsonl", "line 2", "longer than"});
  // Times that cannot be in a file.
  test::write_text(path, "{\"audio\": \"x.wav\", \"duration\": -5}\n");
  test::expect_error([&] { data::read_manifest(path); }, {"line 1", "\"duration\" must be"});
  test::write_text(path, "{\"audio\": \"x.wav\", \"duration\": 0}\n");
  test::expect_error([&] { data::read_manifest(path); }, {"line 1", "\"duration\" must be"});
  test::write_text(path, "{\"audio\": \"x.wav\", \"offset\": -1}\n");
  test::expect_error([&] { data::read_manifest(path); }, {"line 1", "\"offset\" must be"});
  // The last line may lack its newline.
  test::write_text(path, "{\"audio\": \"x.wav\"}\n{\"audio\": \"y.wav\", \"duration\": 1e308}");
  const auto m = data::read_manifest(path);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1].line, 2);
}
