// Whole-file reads that refuse what is not a file, XXH64 against xxhsum's digests, the run lock,
// and YAML documents that would expand without bound.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "losatok/core/config.h"
#include "losatok/core/file_util.h"
#include "test_util.h"

namespace losatok {
namespace {

namespace fs = std::filesystem;

std::string hex(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof(b), "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// (i * 31 + 7) mod 251: a pattern with every byte value, long enough for many 32-byte stripes.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + 7) % 251);
  return s;
}

uint64_t one_shot(const std::string& s) {
  Xxh64 h;
  h.update(s.data(), s.size());
  return h.digest();
}

TEST(Xxh64, MatchesXxhsumAndStreamsInAnyChunks) {
  // Digests printed by `xxhsum -H1` (Debian's xxhash 0.8.1) for the same bytes.
  EXPECT_EQ(hex(one_shot("")), "ef46db3751d8e999");
  EXPECT_EQ(hex(one_shot("abc")), "44bc2cf5ad770999");
  EXPECT_EQ(hex(one_shot(pattern(37))), "8bb92818821427df");
  const std::string big = pattern(100003);
  EXPECT_EQ(hex(one_shot(big)), "bdf8339b6beb233a");
  // Streamed in uneven pieces (crossing the 32-byte stripes anywhere) the digest is the same.
  Xxh64 h;
  std::size_t at = 0;
  for (std::size_t piece = 1; at < big.size(); piece = piece * 7 % 97 + 1) {
    const std::size_t n = std::min(piece, big.size() - at);
    h.update(big.data() + at, n);
    at += n;
  }
  EXPECT_EQ(hex(h.digest()), "bdf8339b6beb233a");
  test::TempDir dir;
  test::write_bytes(dir.path("f"), big);
  EXPECT_EQ(file_xxh64(dir.path("f")), "bdf8339b6beb233a");
}

TEST(ReadFile, RefusesFoldersDevicesAndOversizedFiles) {
  test::TempDir dir;
  test::expect_error([&] { read_file(dir.path("")); }, {"is a folder"});
  test::expect_error([] { read_file("/dev/zero"); }, {"/dev/zero", "not a regular file"});
  test::expect_error([&] { read_file(dir.path("none")); }, {"none", "does not exist"});
  test::write_text(dir.path("f"), "0123456789");
  EXPECT_EQ(read_file(dir.path("f")), "0123456789");
  test::expect_error([&] { read_file(dir.path("f"), 4); }, {"10 bytes", "more than the 4"});
}

TEST(FileLock, ASecondHolderIsToldWhoHoldsItAndAReleasedLockIsTakenOver) {
  test::TempDir dir;
  const std::string path = dir.path(".lock");
  {
    FileLock first(path, "run_dir 'x'");
    // flock conflicts between open files, in one process as between two.
    test::expect_error([&] { FileLock second(path, "run_dir 'x'"); },
                       {"run_dir 'x' is in use by process " + std::to_string(::getpid()), path});
  }
  // The holder is gone (a killed process releases it the same way): the lock is free again.
  FileLock again(path, "run_dir 'x'");
  SUCCEED();
}

TEST(Yaml, ABillionLaughsAndOversizedDocumentsAreRefused) {
  // Ten levels of nine aliases each: 9^10 nodes when walked.
  std::string doc = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 10; ++i) {
    doc += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 9; ++k) doc += std::string(k ? ", " : "") + "*a" + std::to_string(i - 1);
    doc += "]\n";
  }
  test::TempDir dir;
  test::write_text(dir.path("laughs.yaml"), doc);
  test::expect_error([&] { config::load_config_file(dir.path("laughs.yaml")); },
                     {"laughs.yaml", "more than 1000000 nodes"});
  test::write_text(dir.path("big.yaml"), "x: '" + std::string(config::kMaxYamlBytes, 'a') + "'\n");
  test::expect_error([&] { config::load_config_file(dir.path("big.yaml")); }, {"big.yaml", "bytes"});
  // A folder or an empty file given as a config: one line naming it.
  fs::create_directories(dir.path("cfgdir"));
  test::expect_error([&] { config::load_config_file(dir.path("cfgdir")); }, {"cfgdir", "is a folder"});
  test::write_text(dir.path("empty.yaml"), "");
  test::expect_error([&] { config::load_config_file(dir.path("empty.yaml")); }, {"empty.yaml", "is empty"});
  // Aliases within the limit still work.
  test::write_text(dir.path("ok.yaml"), "a: &v [1, 2]\nb: *v\n");
  EXPECT_EQ(config::load_config_file(dir.path("ok.yaml")).root["b"].size(), 2u);
}

}  // namespace
}  // namespace losatok
