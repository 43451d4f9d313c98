// Tar reading and writing by hand (the header layout of POSIX.1-1988 ustar, GNU tar's long
// names and POSIX.1-2001 pax headers), streamed, so a shard is read once and never held twice.
#include "losatok/data/webdataset.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"

namespace losatok::data {

namespace {

constexpr uint64_t kBlock = 512;
// Long-name and pax headers hold a few names, never megabytes: a larger one is a corrupt size.
constexpr uint64_t kMaxMetaHeader = uint64_t{1} << 24;

uint64_t padded(uint64_t size) {
  return (size + kBlock - 1) / kBlock * kBlock;
}

// A NUL-terminated field (or the whole field when it has no NUL).
std::string field_string(const char* field, std::size_t len) {
  return std::string(field, strnlen(field, len));
}

std::string at_byte(uint64_t offset) {
  return " at byte " + std::to_string(offset);
}

// A numeric header field: octal digits (NUL- or space-terminated, maybe space-padded), or GNU's
// base-256 form (first byte 0x80) for values that do not fit. `what` names the field in errors.
uint64_t parse_number(const char* field, std::size_t len, const std::string& path, const std::string& what,
                      uint64_t header_at) {
  const auto bad = [&](const std::string& why) {
    return Error(path + ": bad " + what + " field in the header (" + why + ")" + at_byte(header_at));
  };
  const auto first = static_cast<unsigned char>(field[0]);
  if (first == 0x80 || first == 0xff) {
    if (first == 0xff) throw bad("negative");
    uint64_t v = 0;
    for (std::size_t i = 1; i < len; ++i) {
      if (v >> 56) throw bad("too large");
      v = (v << 8) | static_cast<unsigned char>(field[i]);
    }
    return v;
  }
  std::string s = field_string(field, len);
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'; };
  while (!s.empty() && space(s.back())) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && space(s[i])) ++i;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '7') throw bad("not an octal number");
    if (v >> 60) throw bad("too large");
    v = v * 8 + static_cast<uint64_t>(s[i] - '0');
  }
  return v;
}

// Both sums tar implementations have used: bytes as unsigned and as signed chars, with the
// checksum field itself counted as eight spaces.
bool checksum_ok(const char* header, uint64_t stored) {
  int64_t unsigned_sum = 8 * ' ', signed_sum = 8 * ' ';
  for (std::size_t i = 0; i < kBlock; ++i) {
    if (i >= 148 && i < 156) continue;
    unsigned_sum += static_cast<unsigned char>(header[i]);
    signed_sum += static_cast<signed char>(header[i]);
  }
  return static_cast<int64_t>(stored) == unsigned_sum || static_cast<int64_t>(stored) == signed_sum;
}

struct PaxFields {
  bool has_path = false, has_size = false;
  std::string path;
  uint64_t size = 0;
};

// "<length> <key>=<value>\n" records; only path and size matter for reading members.
PaxFields parse_pax(const std::string& data, const std::string& path, uint64_t header_at) {
  PaxFields out;
  const auto bad = [&](const std::string& why) {
    return Error(path + ": bad pax extended header (" + why + ")" + at_byte(header_at));
  };
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (data[pos] == '\0') break;  // some writers pad the record list with NULs
    std::size_t i = pos;
    uint64_t length = 0;
    while (i < data.size() && data[i] >= '0' && data[i] <= '9') {
      if (length > data.size()) throw bad("record length past its end");
      length = length * 10 + static_cast<uint64_t>(data[i] - '0');
      ++i;
    }
    if (i == pos || i >= data.size() || data[i] != ' ') throw bad("a record does not start with its length");
    if (length > data.size() - pos || length < i - pos + 3 || data[pos + length - 1] != '\n')
      throw bad("a record's length does not end it at a newline");
    const std::string record = data.substr(i + 1, pos + length - 1 - (i + 1));
    const std::size_t eq = record.find('=');
    if (eq == std::string::npos || eq == 0) throw bad("a record has no key=value");
    const std::string key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key == "path") {
      out.has_path = true;
      out.path = value;
    } else if (key == "size") {
      if (value.empty() || value.size() > 19 || value.find_first_not_of("0123456789") != std::string::npos)
        throw bad("size '" + value + "' is not a byte count");
      out.has_size = true;
      out.size = std::stoull(value);
    } else if (key.rfind("GNU.sparse.", 0) == 0) {
      throw Error(path + ": sparse members (GNU.sparse pax records) are not supported" + at_byte(header_at));
    }
    pos += length;
  }
  return out;
}

// webdataset's base_plus_ext: the regex ^((?:.*/|)[^.]+)[.]([^/]*)$ written out (no std::regex:
// its backtracking recurses per character, and a pax name can be long). False: no key (the member
// is skipped).
bool split_key(const std::string& name, std::string& key, std::string& ext) {
  const std::size_t slash = name.rfind('/');
  const std::size_t base = slash == std::string::npos ? 0 : slash + 1;
  const std::size_t dot = name.find('.', base);
  if (dot == std::string::npos) return false;
  if (dot > base) {  // the usual case: the basename up to its first dot
    key = name.substr(0, dot);
    ext = name.substr(dot + 1);
    return true;
  }
  // The basename starts with a dot: [^.]+ may still reach back over the last '/' when the folder
  // name before it has no dot ("dir/.x" is key "dir/", ext "x").
  if (slash == std::string::npos) return false;
  const std::size_t prev = slash == 0 ? std::string::npos : name.rfind('/', slash - 1);
  const std::size_t from = prev == std::string::npos ? 0 : prev + 1;
  if (name.find('.', from) < slash) return false;
  key = name.substr(0, slash + 1);
  ext = name.substr(dot + 1);
  return true;
}

// webdataset's tar_file_iterator skips "__...__" metadata at the top and any "__...__/" folder.
bool is_metadata(const std::string& name) {
  const auto wrapped = [](const std::string& s) {
    return s.size() >= 2 && s.compare(0, 2, "__") == 0 && s.compare(s.size() - 2, 2, "__") == 0;
  };
  if (name.find('/') == std::string::npos && wrapped(name)) return true;
  const std::string first = name.substr(0, name.find('/'));
  return first.size() >= 4 && wrapped(first);
}

bool wildcard_match(const std::string& pattern, const std::string& name) {
  std::size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

void put_octal(char* field, std::size_t len, uint64_t value) {
  // len - 1 digits and a NUL
  for (std::size_t i = len - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  field[len - 1] = '\0';
}

void put_size(char* field, uint64_t size) {
  if (size < (uint64_t{1} << 33)) {  // 11 octal digits
    put_octal(field, 12, size);
    return;
  }
  std::memset(field, 0, 12);  // GNU base-256
  field[0] = static_cast<char>(0x80);
  for (int i = 11; i >= 4; --i) {
    field[i] = static_cast<char>(size & 0xff);
    size >>= 8;
  }
}

std::string make_header(const std::string& name, uint64_t size, char type, bool gnu) {
  std::string h(kBlock, '\0');
  char* b = h.data();
  std::memcpy(b, name.data(), std::min<std::size_t>(name.size(), 100));
  put_octal(b + 100, 8, 0644);
  put_octal(b + 108, 8, 0);
  put_octal(b + 116, 8, 0);
  put_size(b + 124, size);
  put_octal(b + 136, 12, 0);
  b[156] = type;
  if (gnu) {
    std::memcpy(b + 257, "ustar  ", 8);  // GNU magic and version, NUL-terminated
  } else {
    std::memcpy(b + 257, "ustar", 6);
    std::memcpy(b + 263, "00", 2);
    put_octal(b + 329, 8, 0);
    put_octal(b + 337, 8, 0);
  }
  std::memset(b + 148, ' ', 8);
  uint64_t sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  put_octal(b + 148, 7, sum);  // six digits and a NUL; the eighth byte stays a space
  return h;
}

}  // namespace

TarReader::TarReader(const std::string& path) : path_(path) {
  if (const std::string why = not_regular_file(path); !why.empty())
    throw Error("tar archive '" + path + "' " + why);
  in_.open(path, std::ios::binary);
  if (!in_) throw Error("cannot open tar archive '" + path + "'");
  file_size_ = std::filesystem::file_size(path);
}

std::string TarReader::read_bytes(uint64_t size, const std::string& what) {
  if (size > file_size_ - offset_)
    throw Error(path_ + ": truncated archive: " + what + " of " + std::to_string(size) +
                " bytes runs past the end of the file (" + std::to_string(file_size_) + " bytes)" +
                at_byte(offset_));
  std::string data(static_cast<std::size_t>(size), '\0');
  in_.seekg(static_cast<std::streamoff>(offset_));
  in_.read(data.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in_.gcount()) != size)
    throw Error(path_ + ": read error in " + what + at_byte(offset_));
  offset_ += padded(size);
  return data;
}

bool TarReader::next(TarMember& member) {
  std::string long_name;
  bool has_long_name = false;
  PaxFields pax;
  while (!done_) {
    const uint64_t at = offset_;
    if (at == file_size_) {
      if (at == 0) throw Error(path_ + ": empty file, not a tar archive");
      throw Error(path_ + ": truncated archive: the file ends without the end-of-archive block" +
                  at_byte(at));
    }
    if (file_size_ < at || file_size_ - at < kBlock)
      throw Error(path_ + ": truncated archive: a header of " +
                  std::to_string(file_size_ - std::min(at, file_size_)) + " of 512 bytes" + at_byte(at));
    char h[kBlock];
    in_.seekg(static_cast<std::streamoff>(at));
    in_.read(h, kBlock);
    if (in_.gcount() != static_cast<std::streamsize>(kBlock))
      throw Error(path_ + ": read error" + at_byte(at));
    if (std::all_of(h, h + kBlock, [](char c) { return c == '\0'; })) {
      done_ = true;
      return false;
    }
    if (at == 0 && static_cast<unsigned char>(h[0]) == 0x1f && static_cast<unsigned char>(h[1]) == 0x8b)
      throw Error(path_ + ": a gzip-compressed file, not a plain tar archive: decompress it first" +
                  at_byte(0));
    if (!checksum_ok(h, parse_number(h + 148, 8, path_, "checksum", at)))
      throw Error(path_ + ": bad header checksum (a corrupt archive, or not a tar file)" + at_byte(at));
    uint64_t size = parse_number(h + 124, 12, path_, "size", at);
    const char type = h[156];
    offset_ = at + kBlock;
    if (type == 'L' || type == 'K' || type == 'x' || type == 'g') {
      if (size > kMaxMetaHeader)
        throw Error(path_ + ": implausible extended header of " + std::to_string(size) + " bytes" +
                    at_byte(at));
      const std::string data = read_bytes(size, std::string("the extended header"));
      if (type == 'L') {
        long_name = field_string(data.data(), data.size());
        has_long_name = true;
      } else if (type == 'x') {
        pax = parse_pax(data, path_, at);
      }  // 'K' (a long link target) and 'g' (global pax records) do not change a member's name
      continue;
    }
    std::string name = field_string(h, 100);
    if (std::memcmp(h + 257, "ustar\0", 6) == 0) {  // POSIX ustar: the prefix field holds the folders
      const std::string prefix = field_string(h + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    if (has_long_name) name = long_name;
    if (pax.has_path) name = pax.path;
    if (pax.has_size) size = pax.size;
    has_long_name = false;
    pax = PaxFields{};
    if (type == 'S')
      throw Error(path_ + ": member '" + name + "' is a GNU sparse file, which is not supported" +
                  at_byte(at));
    const bool regular = type == '0' || type == '7' || (type == '\0' && (name.empty() || name.back() != '/'));
    if (regular) {
      member.name = name;
      member.data = read_bytes(size, "member '" + name + "'");
      return true;
    }
    // Links, devices, folders and FIFOs carry no data (whatever their size field says, as Python's
    // tarfile reads them); any other type's data is skipped.
    const bool no_data = type == '\0' || (type >= '1' && type <= '6');
    if (!no_data) {
      if (size > file_size_ - offset_)
        throw Error(path_ + ": truncated archive: member '" + name + "' of " + std::to_string(size) +
                    " bytes runs past the end of the file (" + std::to_string(file_size_) + " bytes)" +
                    at_byte(offset_));
      offset_ += padded(size);
    }
  }
  return false;
}

std::vector<TarMember> read_tar(const std::string& path) {
  TarReader reader(path);
  std::vector<TarMember> out;
  TarMember m;
  while (reader.next(m)) out.push_back(std::move(m));
  return out;
}

void write_tar(const std::string& path, const std::vector<TarMember>& members) {
  std::string out;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const TarMember& m = members[i];
    if (m.name.empty())
      throw Error("write_tar '" + path + "': member " + std::to_string(i) + " has an empty name");
    if (m.name.find('\0') != std::string::npos)
      throw Error("write_tar '" + path + "': member " + std::to_string(i) + "'s name holds a NUL byte");
    const bool long_name = m.name.size() > 100;
    if (long_name) {
      const std::string data = m.name + '\0';
      out += make_header("././@LongLink", data.size(), 'L', true);
      out += data;
      out.append(padded(data.size()) - data.size(), '\0');
    }
    out += make_header(m.name, m.data.size(), '0', long_name);
    out += m.data;
    out.append(padded(m.data.size()) - m.data.size(), '\0');
  }
  out.append(2 * kBlock, '\0');  // the end-of-archive blocks
  write_file_atomic(path, out);
}

WdsReader::WdsReader(const std::string& path) : tar_(path) {}

bool WdsReader::next(WdsSample& sample) {
  sample = WdsSample{};
  bool started = false;
  while (true) {
    if (!has_pending_) {
      bool got = false;
      while (tar_.next(pending_)) {
        if (is_metadata(pending_.name) || !split_key(pending_.name, pending_key_, pending_ext_)) continue;
        std::transform(pending_ext_.begin(), pending_ext_.end(), pending_ext_.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        got = true;
        break;
      }
      if (!got) return started;
      has_pending_ = true;
    }
    if (!started) {
      sample.key = pending_key_;
      sample.shard = tar_.path();
      started = true;
    } else if (pending_key_ != sample.key) {
      return true;
    }
    if (!sample.files.emplace(pending_ext_, std::move(pending_.data)).second)
      throw Error(tar_.path() + ": sample '" + sample.key + "' has two '" + pending_ext_ + "' members ('" +
                  pending_.name + "' again)");
    has_pending_ = false;
  }
}

std::vector<WdsSample> read_wds_shard(const std::string& path) {
  WdsReader reader(path);
  std::vector<WdsSample> out;
  WdsSample s;
  while (reader.next(s)) out.push_back(std::move(s));
  return out;
}

std::string wds_audio_extension(const WdsSample& sample) {
  for (const char* ext : {"flac", "mp3", "sox", "wav", "m4a", "ogg", "wma"})
    if (sample.files.count(ext)) return ext;
  return "";
}

std::vector<std::string> glob_shards(const std::string& dir, const std::string& pattern) {
  namespace fs = std::filesystem;
  const fs::path full = fs::path(dir) / pattern;
  const fs::path folder = full.parent_path();
  const std::string name_pattern = full.filename().string();
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    throw Error("no shards matching '" + pattern + "': folder '" + folder.string() + "' does not exist");
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code file_ec;  // a dangling link is no shard
    if (wildcard_match(name_pattern, name) && entry.is_regular_file(file_ec))
      out.push_back(entry.path().string());
  }
  if (ec) throw Error("cannot list folder '" + folder.string() + "': " + ec.message());
  if (out.empty()) throw Error("no shards matching '" + pattern + "' in '" + dir + "'");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace losatok::data
