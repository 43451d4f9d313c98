// Tar archives and WebDataset shards (github.com/webdataset/webdataset) as X-ARES distributes its
// data: members streamed from the file, grouped into samples the way webdataset groups them.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace losatok::data {

struct TarMember {
  std::string name;  // the full member path (ustar prefix, GNU long name or pax path applied)
  std::string data;
};

// The regular-file members of a tar, one at a time, read from the file as they come: POSIX
// ustar (the prefix field), GNU long names ('L'), pax extended headers ('x': path and size; 'g'
// ignored); directories, links, devices and FIFOs are skipped. A truncated or corrupt archive (a
// bad header checksum, a member running past the end of the file, no end-of-archive block) is a
// losatok::Error "<path>: ... at byte N".
class TarReader {
 public:
  explicit TarReader(const std::string& path);
  // The next regular-file member; false after the end-of-archive block.
  bool next(TarMember& member);
  const std::string& path() const { return path_; }

 private:
  std::string read_bytes(uint64_t size, const std::string& what);
  std::string path_;
  std::ifstream in_;
  uint64_t file_size_ = 0, offset_ = 0;  // offset_: the next header's byte
  bool done_ = false;
};

// Every regular-file member of a tar, in order (TarReader's rules and errors).
std::vector<TarMember> read_tar(const std::string& path);

// Writes a ustar archive (a GNU 'L' long-name entry before any member whose name exceeds 100
// bytes), mode 0644, owner 0, mtime 0: the same members give the same bytes. Atomic (a temporary
// file renamed over `path`).
void write_tar(const std::string& path, const std::vector<TarMember>& members);

// A WebDataset sample: consecutive members with the same key, the member path up to the first '.'
// of its basename (webdataset's base_plus_ext); `files` maps the rest of the name after that dot,
// lower-cased ("wav", "json", "seg.npy"), to the member's bytes.
struct WdsSample {
  std::string key, shard;
  std::map<std::string, std::string> files;
};

// The samples of one shard, streamed as webdataset's tarfile_to_samples yields them: members
// without an extension and metadata members ("__...__") are skipped; two members of one sample
// with the same extension are an error naming the shard and the key.
class WdsReader {
 public:
  explicit WdsReader(const std::string& path);
  bool next(WdsSample& sample);

 private:
  TarReader tar_;
  TarMember pending_;
  std::string pending_key_, pending_ext_;
  bool has_pending_ = false;
};

std::vector<WdsSample> read_wds_shard(const std::string& path);

// The extension of the sample's audio member as X-ARES picks it (webdataset's
// rename(audio="flac;mp3;sox;wav;m4a;ogg;wma"): the first of these present), "" when none.
std::string wds_audio_extension(const WdsSample& sample);

// The shards in `dir` whose names match `pattern` ('*' and '?' wildcards in the basename, as
// Python's Path.glob matches them; a folder part in the pattern is taken below `dir`), sorted by
// name; none is an Error naming the folder and the pattern.
std::vector<std::string> glob_shards(const std::string& dir, const std::string& pattern);

}  // namespace losatok::data
