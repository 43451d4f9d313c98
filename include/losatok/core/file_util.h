// Whole-file reads and crash-safe writes, shared by configs, weights and checkpoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace losatok {

// The file's bytes; throws losatok::Error naming `path` when it cannot be read, is not a
// regular file (a folder, a device, a pipe) or is larger than `max_bytes`.
std::string read_file(const std::string& path, std::size_t max_bytes = std::size_t(1) << 30);

// "" when `path` is a regular file (after symlinks), else why not ("does not exist", "is a
// folder", "is not a regular file").
std::string not_regular_file(const std::string& path);

// XXH64 (the xxHash specification, https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md),
// streamed: checkpoints' per-file content checksums. `xxhsum -H1 FILE` prints the same digest.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, std::size_t size);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  unsigned char buf_[32];
  std::size_t buffered_ = 0;
  uint64_t total_ = 0, seed_;
};
// A file's XXH64 as 16 lower-case hex digits (what `xxhsum -H1` prints).
std::string file_xxh64(const std::string& path);

// An exclusive advisory lock (flock) on `path`, held until destruction; the file records the
// holder's PID and host. The kernel drops the lock when its process dies, so a lock file left
// by a killed run is simply taken over. `what` names the locked thing in the error.
class FileLock {
 public:
  FileLock(const std::string& path, const std::string& what);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// Writes `bytes` to a temporary name beside `path`, fsyncs it, then renames it over `path`:
// a crash at any moment leaves either the old file or the new one, never a mix. Creates the
// parent folders.
void write_file_atomic(const std::string& path, const std::string& bytes);

// The executable `name` in a folder of $PATH, "" when there is none.
std::string find_program(const std::string& name);
// `s` as one single-quoted POSIX shell word.
std::string shell_quote(const std::string& s);

}  // namespace losatok
