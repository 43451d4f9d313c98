// Config trees (docs/configs.md): YAML files composed through `defaults:`, command-line
// overrides (a.b=v, +a.b=v, ++a.b=v, ~a.b), ${a.b} interpolation, and typed config structs
// read from the tree with errors naming the dotted path and the file the value came from.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "losatok/core/error.h"

namespace losatok::config {

// A copy of `node` made of fresh nodes. Unlike YAML::Clone it shares nothing, not even
// through YAML anchors/aliases (`b: *a`), so an override of `a.x` never changes `b.x`;
// a self-referencing alias is an error instead of a cycle.
YAML::Node deep_copy(const YAML::Node& node);

// A composed config: the YAML map plus, for every path set along the way, where it came from
// ("defaults", a file name, "command line").
// Copies are deep: yaml-cpp nodes are references, and an edit to a copy (a resumed run's
// overrides, say) must never reach the original.
struct ConfigTree {
  YAML::Node root = YAML::Node(YAML::NodeType::Map);
  std::map<std::string, std::string> origins;

  ConfigTree() = default;
  ConfigTree(const ConfigTree& other) : root(deep_copy(other.root)), origins(other.origins) {}
  ConfigTree& operator=(const ConfigTree& other) {
    if (this != &other) {
      root.reset(deep_copy(other.root));  // `root = ...` would write into the shared node
      origins = other.origins;
    }
    return *this;
  }
  ConfigTree(ConfigTree&& other) noexcept : origins(std::move(other.origins)) { root.reset(other.root); }
  ConfigTree& operator=(ConfigTree&& other) noexcept {
    root.reset(other.root);
    origins = std::move(other.origins);
    return *this;
  }

  // The source of `path` or of its nearest ancestor that has one.
  std::string origin_of(const std::string& path) const;
};

// Limits on a YAML document: its size, and its node count with aliases expanded (a "billion
// laughs" file of nested aliases is refused instead of growing without bound when walked).
inline constexpr std::size_t kMaxYamlBytes = std::size_t(16) << 20;
inline constexpr std::size_t kMaxYamlNodes = 1000000;

// Parses YAML text within those limits; errors name `where` and the line.
YAML::Node parse_yaml(const std::string& text, const std::string& where);
// parse_yaml of a file's text: a file that is missing, not a regular file or too large is an
// error naming it.
YAML::Node load_yaml_file(const std::string& path, const std::string& what = "YAML file");

// Loads one file and, depth-first, the files its `defaults:` list names (paths relative to
// the file's folder; `.yaml` may be omitted). Later entries and the file itself win.
ConfigTree load_config_file(const std::string& path);

// Deep-merges `overlay` into `tree` (maps merge, scalars and lists replace). The overlay is
// cloned first: yaml-cpp nodes are references and must never alias between trees.
void merge(ConfigTree& tree, const YAML::Node& overlay, const std::string& source);

// One command-line override: `a.b=v` (key must exist), `+a.b=v` (key must not exist),
// `++a.b=v` (either), `~a.b` (delete). `v` is parsed as YAML.
void apply_override(ConfigTree& tree, const std::string& expression);

// Replaces `${a.b}` (whole value: keeps the referenced node's type; inside a string: text)
// and `${env:NAME}` / `${env:NAME,default}`. Cycles and missing targets are errors.
void resolve_interpolations(ConfigTree& tree);

// defaults (from the typed struct) -> files left to right -> overrides -> interpolation.
ConfigTree compose(const YAML::Node& defaults, const std::vector<std::string>& files,
                   const std::vector<std::string>& overrides);

// Node at a dotted path, or an undefined node. Never creates keys.
YAML::Node find(const YAML::Node& root, const std::string& dotted_path);

std::string dump(const YAML::Node& node);

// Writes `run_dir/config.yaml` (the resolved tree) and `run_dir/overrides.yaml` (the
// command-line overrides as given), each atomically; creates run_dir.
void save_run_config(const std::string& run_dir, const YAML::Node& resolved,
                     const std::vector<std::string>& overrides);

// Keys whose scalar values differ between two trees, as dotted paths (for resume warnings).
std::vector<std::string> changed_keys(const YAML::Node& before, const YAML::Node& after);

// ---------------------------------------------------------------------------------------
// Typed structs. A config struct lists its fields once, in a `visit` member:
//
//   struct RuntimeConfig {
//     std::string device = "cpu";
//     int threads = 0;
//     template <class V> void visit(V& v) { v("device", device); v("threads", threads); }
//     void validate() const;   // throws ConfigError(path-relative-to-struct, message)
//   };
//
// and read<T>(tree) / to_yaml(value) do the rest: unknown keys and wrong types are errors
// naming the dotted path and the file.

namespace detail {
// A config struct is anything with a template `visit(V&)`; probe it with a do-nothing visitor.
struct ProbeVisitor {
  template <class F>
  void operator()(const char*, F&) {}
};
template <class T, class = void>
struct is_struct : std::false_type {};
template <class T>
struct is_struct<T, std::void_t<decltype(std::declval<T&>().visit(std::declval<ProbeVisitor&>()))>>
    : std::true_type {};
template <class T, class = void>
struct has_validate : std::false_type {};
template <class T>
struct has_validate<T, std::void_t<decltype(std::declval<const T&>().validate())>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_string_map : std::false_type {};
template <class T>
struct is_string_map<std::map<std::string, T>> : std::true_type {};
// A value that reads, writes and validates itself (read_config / write_config /
// validate_config): the root config's stage section (core/stage_section.h).
template <class T, class = void>
struct is_custom : std::false_type {};
template <class T>
struct is_custom<T, std::void_t<decltype(std::declval<T&>().read_config(std::declval<const YAML::Node&>(),
                                                                        std::declval<const std::string&>()))>>
    : std::true_type {};

std::string join_path(const std::string& parent, const std::string& key);
std::string describe(const YAML::Node& node);
[[noreturn]] void fail_type(const std::string& path, const char* expected, const YAML::Node& node);
bool parse_bool(const YAML::Node& node, const std::string& path);
int64_t parse_int(const YAML::Node& node, const std::string& path);
double parse_float(const YAML::Node& node, const std::string& path);
std::string parse_string(const YAML::Node& node, const std::string& path);
// The shortest text that reads back as exactly `v` ("1e-07", not "9.9999999999999995e-08").
std::string shortest_float(double v);
}  // namespace detail

class Reader {
 public:
  Reader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {}

  template <class T>
  void operator()(const char* key, T& value) {
    seen_.insert(key);
    const YAML::Node& n = node_;
    if (!n.IsMap()) return;
    YAML::Node child = n[key];
    if (!child.IsDefined()) return;
    read_value(child, detail::join_path(path_, key), value);
  }

  // Rejects keys the struct did not ask for.
  void finish() const;
  // The map being read and its dotted path (for structs that check their keys themselves).
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }

  template <class T>
  static void read_value(const YAML::Node& node, const std::string& path, T& value) {
    if constexpr (detail::is_custom<T>::value) {
      value.read_config(node, path);
    } else if constexpr (detail::is_struct<T>::value) {
      if (node.IsNull()) return;  // `key:` with nothing keeps the defaults
      if (!node.IsMap()) detail::fail_type(path, "a map", node);
      Reader sub(node, path);
      value.visit(sub);
      sub.finish();
    } else if constexpr (detail::is_optional<T>::value) {
      if (node.IsNull()) {
        value.reset();
      } else {
        typename T::value_type inner{};
        if (value) inner = *value;
        read_value(node, path, inner);
        value = inner;
      }
    } else if constexpr (detail::is_vector<T>::value) {
      if (!node.IsSequence()) detail::fail_type(path, "a list", node);
      T out;
      for (std::size_t i = 0; i < node.size(); ++i) {
        typename T::value_type item{};
        read_value(node[i], path + "[" + std::to_string(i) + "]", item);
        out.push_back(std::move(item));
      }
      value = std::move(out);
    } else if constexpr (detail::is_string_map<T>::value) {
      if (node.IsNull()) return;
      if (!node.IsMap()) detail::fail_type(path, "a map", node);
      T out;
      for (const auto& kv : node) {
        const std::string k = kv.first.as<std::string>();
        typename T::mapped_type item{};
        read_value(kv.second, detail::join_path(path, k), item);
        out.emplace(k, std::move(item));
      }
      value = std::move(out);
    } else if constexpr (std::is_same_v<T, bool>) {
      value = detail::parse_bool(node, path);
    } else if constexpr (std::is_integral_v<T>) {
      const int64_t v = detail::parse_int(node, path);
      if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (v > 0 && static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
        throw ConfigError(path, "integer " + std::to_string(v) + " out of range");
      value = static_cast<T>(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      value = static_cast<T>(detail::parse_float(node, path));
    } else if constexpr (std::is_same_v<T, std::string>) {
      value = detail::parse_string(node, path);
    } else if constexpr (std::is_same_v<T, YAML::Node>) {
      value = deep_copy(node);  // free-form section
    } else {
      static_assert(sizeof(T) == 0, "unsupported config field type");
    }
  }

 private:
  YAML::Node node_;
  std::string path_;
  std::set<std::string> seen_;
};

class Writer {
 public:
  explicit Writer(YAML::Node& node) : node_(node) {}

  template <class T>
  void operator()(const char* key, const T& value) {
    node_[key] = to_node(value);
  }

  template <class T>
  static YAML::Node to_node(const T& value) {
    if constexpr (detail::is_custom<T>::value) {
      return value.write_config();
    } else if constexpr (detail::is_struct<T>::value) {
      YAML::Node n(YAML::NodeType::Map);
      Writer w(n);
      const_cast<T&>(value).visit(w);  // visit only reads through a Writer
      return n;
    } else if constexpr (detail::is_optional<T>::value) {
      return value ? to_node(*value) : YAML::Node(YAML::NodeType::Null);
    } else if constexpr (detail::is_vector<T>::value) {
      YAML::Node n(YAML::NodeType::Sequence);
      for (const auto& item : value) n.push_back(to_node(item));
      return n;
    } else if constexpr (detail::is_string_map<T>::value) {
      YAML::Node n(YAML::NodeType::Map);
      for (const auto& kv : value) n[kv.first] = to_node(kv.second);
      return n;
    } else if constexpr (std::is_same_v<T, YAML::Node>) {
      return deep_copy(value);
    } else if constexpr (std::is_floating_point_v<T>) {
      return YAML::Node(detail::shortest_float(static_cast<double>(value)));
    } else {
      return YAML::Node(value);
    }
  }

 private:
  YAML::Node& node_;
};

// Recursively calls validate() on the struct and the nested structs that define one;
// a ConfigError's path is made absolute.
template <class T>
void validate_all(const T& value, const std::string& path);

namespace detail {
class Validator {
 public:
  explicit Validator(std::string path) : path_(std::move(path)) {}
  template <class F>
  void operator()(const char* key, const F& field) {
    if constexpr (is_custom<F>::value)
      field.validate_config(join_path(path_, key));
    else if constexpr (is_struct<F>::value)
      validate_all(field, join_path(path_, key));
  }

 private:
  std::string path_;
};
}  // namespace detail

template <class T>
void validate_all(const T& value, const std::string& path) {
  detail::Validator v(path);
  const_cast<T&>(value).visit(v);
  if constexpr (detail::has_validate<T>::value) {
    try {
      value.validate();
    } catch (const ConfigError& e) {
      throw ConfigError(detail::join_path(path, e.path()), e.bare_message(), e.origin());
    }
  }
}

template <class T>
YAML::Node to_yaml(const T& value) {
  return Writer::to_node(value);
}

// Reads a typed struct from `tree` (at `path`, "" = root), then validates it. Errors name
// the dotted path and the file the offending value came from.
template <class T>
T read(const ConfigTree& tree, const std::string& path = "") {
  T value{};
  try {
    YAML::Node node = path.empty() ? tree.root : find(tree.root, path);
    if (node.IsDefined()) Reader::read_value(node, path, value);
    validate_all(value, path);
  } catch (const ConfigError& e) {
    if (!e.origin().empty()) throw;
    throw e.with_origin(tree.origin_of(e.path()));
  }
  return value;
}

// Throws ConfigError(path, message) when `ok` is false; for validate() bodies.
inline void check(bool ok, const std::string& path, const std::string& message) {
  if (!ok) throw ConfigError(path, message);
}

}  // namespace losatok::config
