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
