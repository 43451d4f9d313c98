// Composition, overrides and interpolation of YAML config trees (see config.h).
#include "losatok/core/config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "losatok/core/file_util.h"

namespace fs = std::filesystem;

namespace losatok::config {

namespace detail {

std::string join_path(const std::string& parent, const std::string& key) {
  if (parent.empty()) return key;
  if (key.empty()) return parent;
  return parent + "." + key;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar: return "'" + node.Scalar() + "'";
    default: return "nothing";
  }
}

void fail_type(const std::string& path, const char* expected, const YAML::Node& node) {
  throw ConfigError(path, std::string("expected ") + expected + ", got " + describe(node));
}

bool parse_bool(const YAML::Node& node, const std::string& path) {
  bool v = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, v)) fail_type(path, "true or false", node);
  return v;
}

int64_t parse_int(const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) fail_type(path, "an integer", node);
  const std::string& s = node.Scalar();
  std::size_t used = 0;
  try {
    const long long v = std::stoll(s, &used, 10);  // YAML 1.2: 010 is ten, not eight
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  // Accept integral floats written as 1e3 or 16000.0.
  try {
    const double d = std::stod(s, &used);
    if (used == s.size() && std::fabs(d) < 9.2e18 && d == static_cast<double>(static_cast<long long>(d)))
      return static_cast<int64_t>(d);
  } catch (const std::exception&) {
  }
  fail_type(path, "an integer", node);
}

double parse_float(const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) fail_type(path, "a number", node);
  const std::string& s = node.Scalar();
  if (s == ".inf" || s == "inf") return std::numeric_limits<double>::infinity();
  if (s == "-.inf" || s == "-inf") return -std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
  std::size_t used = 0;
  try {
    const double d = std::stod(s, &used);
    if (used == s.size()) return d;
  } catch (const std::exception&) {
  }
  fail_type(path, "a number", node);
}

std::string parse_string(const YAML::Node& node, const std::string& path) {
  if (node.IsNull()) return "";
  if (!node.IsScalar()) fail_type(path, "a string", node);
  return node.Scalar();
}

std::string shortest_float(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Keep it a float for YAML readers: "1" -> "1.0" (but "1e-07" is already one).
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

}  // namespace detail

namespace {

std::vector<std::string> split_path(const std::string& dotted) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : dotted) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  for (const auto& p : parts)
    if (p.empty()) throw ConfigError(dotted, "empty key in dotted path");
  return parts;
}

// Records `source` for every path in `node` (leaves and maps alike).
void record_origins(std::map<std::string, std::string>& origins, const YAML::Node& node,
                    const std::string& path, const std::string& source) {
  if (!path.empty()) origins[path] = source;
  if (node.IsMap())
    for (const auto& kv : node)
      record_origins(origins, kv.second, detail::join_path(path, kv.first.Scalar()), source);
}

void erase_origins(std::map<std::string, std::string>& origins, const std::string& path) {
  for (auto it = origins.begin(); it != origins.end();) {
    const std::string& k = it->first;
    if (k == path ||
        (k.size() > path.size() && k.compare(0, path.size(), path) == 0 && k[path.size()] == '.'))
      it = origins.erase(it);
    else
      ++it;
  }
}

// Deep merge; `dst` is a map node owned by the tree, `src` already cloned.
void merge_nodes(YAML::Node dst, const YAML::Node& src, const std::string& path,
                 std::map<std::string, std::string>& origins, const std::string& source) {
  for (const auto& kv : src) {
    const std::string key = kv.first.Scalar();
    const std::string child_path = detail::join_path(path, key);
    YAML::Node existing = dst[key];
    if (existing.IsMap() && kv.second.IsMap()) {
      merge_nodes(existing, kv.second, child_path, origins, source);
    } else {
      erase_origins(origins, child_path);
      dst[key] = kv.second;
      record_origins(origins, kv.second, child_path, source);
    }
  }
}

// Counts nodes as a walk sees them (an alias once per use) and stops at the limit.
void count_nodes(const YAML::Node& node, std::size_t& count, int depth, const std::string& where) {
  if (++count > kMaxYamlNodes)
    throw Error(where + " expands to more than " + std::to_string(kMaxYamlNodes) +
                " nodes (nested aliases?): refused");
  if (depth > 64) throw Error(where + " is nested more than 64 levels deep (a recursive alias?)");
  if (node.IsMap()) {
    for (const auto& kv : node) {
      count_nodes(kv.first, count, depth + 1, where);
      count_nodes(kv.second, count, depth + 1, where);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) count_nodes(item, count, depth + 1, where);
  }
}

}  // namespace

YAML::Node parse_yaml(const std::string& text, const std::string& where) {
  if (text.size() > kMaxYamlBytes)
    throw Error(where + " has " + std::to_string(text.size()) + " bytes, more than the " +
                std::to_string(kMaxYamlBytes) + " a YAML document may have");
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error("invalid YAML in " + where + " at line " + std::to_string(e.mark.line + 1) + ", column " +
                std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  std::size_t count = 0;
  count_nodes(doc, count, 0, where);
  return doc;
}

YAML::Node load_yaml_file(const std::string& path, const std::string& what) {
  if (const std::string why = not_regular_file(path); !why.empty())
    throw Error(what + " '" + path + "' " + why);
  return parse_yaml(read_file(path, kMaxYamlBytes), what + " '" + path + "'");
}

namespace {

std::string resolve_default_path(const fs::path& base_dir, const std::string& entry) {
  fs::path p = base_dir / entry;
  if (fs::exists(p)) return p.lexically_normal().string();
  fs::path with_ext = base_dir / (entry + ".yaml");
  if (fs::exists(with_ext)) return with_ext.lexically_normal().string();
  return p.lexically_normal().string();
}

void load_recursive(ConfigTree& tree, const std::string& path, std::vector<std::string>& stack) {
  const std::string canonical =
      fs::exists(path) ? fs::weakly_canonical(path).string() : fs::path(path).string();
  for (const auto& s : stack) {
    if (s != canonical) continue;
    std::string chain;
    for (const auto& f : stack) chain += f + " -> ";
    throw Error("config file '" + path + "' includes itself through defaults: " + chain + canonical);
  }
  if (const std::string why = not_regular_file(path); !why.empty()) {
    const std::string by = stack.empty() ? "" : " (listed in defaults: of '" + stack.back() + "')";
    throw Error("config file '" + path + "' " + why + by);
  }
  stack.push_back(canonical);
  YAML::Node doc = load_yaml_file(path, "config file");
  if (doc.IsNull()) throw Error("config file '" + path + "' is empty");
  if (!doc.IsMap()) throw ConfigError("", "the top level must be a map", path);

  YAML::Node own(YAML::NodeType::Map);
  YAML::Node defaults;
  for (const auto& kv : doc) {
    if (kv.first.Scalar() == "defaults")
      defaults = kv.second;
    else
      own[kv.first] = kv.second;
  }
  if (defaults.IsDefined() && !defaults.IsNull()) {
    if (!defaults.IsSequence()) throw ConfigError("defaults", "expected a list of config files", path);
    const fs::path base_dir = fs::path(path).parent_path();
    for (std::size_t i = 0; i < defaults.size(); ++i) {
      if (!defaults[i].IsScalar())
        throw ConfigError("defaults[" + std::to_string(i) + "]", "expected a file name", path);
      load_recursive(tree, resolve_default_path(base_dir, defaults[i].Scalar()), stack);
    }
  }
  merge(tree, own, path);
  stack.pop_back();
}

const char* kInterpOpen = "${";

}  // namespace

std::string ConfigTree::origin_of(const std::string& path) const {
  std::string p = path;
  // Strip list indices ("a.b[2]" -> "a.b") before looking up.
  if (auto br = p.find('['); br != std::string::npos) p = p.substr(0, br);
  while (true) {
    auto it = origins.find(p);
    if (it != origins.end()) return it->second;
    auto dot = p.rfind('.');
    if (dot == std::string::npos) return {};
    p = p.substr(0, dot);
  }
}

YAML::Node find(const YAML::Node& root, const std::string& dotted_path) {
  YAML::Node cur = root;  // rebinding a local handle; `reset` never writes into the tree
  for (const auto& key : split_path(dotted_path)) {
    if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node& c = cur;
    YAML::Node next = c[key];
    if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    cur.reset(next);
  }
  return cur;
}

void merge(ConfigTree& tree, const YAML::Node& overlay, const std::string& source) {
  if (!overlay.IsDefined() || overlay.IsNull()) return;
  if (!overlay.IsMap()) throw ConfigError("", "the top level must be a map", source);
  merge_nodes(tree.root, deep_copy(overlay), "", tree.origins, source);
}

namespace {
YAML::Node deep_copy_at(const YAML::Node& node, int depth) {
  if (depth > 64) throw Error("config nested more than 64 levels deep (a recursive YAML alias?)");
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      YAML::Node out(YAML::NodeType::Map);
      for (const auto& kv : node) out[kv.first.Scalar()] = deep_copy_at(kv.second, depth + 1);
      return out;
    }
    case YAML::NodeType::Sequence: {
      YAML::Node out(YAML::NodeType::Sequence);
      for (const auto& item : node) out.push_back(deep_copy_at(item, depth + 1));
      return out;
    }
    case YAML::NodeType::Scalar: {
      return YAML::Node(node.Scalar());
    }
    case YAML::NodeType::Null: return YAML::Node(YAML::NodeType::Null);
    default: return YAML::Node();
  }
}
}  // namespace

YAML::Node deep_copy(const YAML::Node& node) {
  return deep_copy_at(node, 0);
}

ConfigTree load_config_file(const std::string& path) {
  ConfigTree tree;
  std::vector<std::string> stack;
  load_recursive(tree, path, stack);
  return tree;
}

void apply_override(ConfigTree& tree, const std::string& expression) {
  static const std::string kSource = "command line";
  std::string expr = expression;
  enum class Mode { kSet, kAdd, kAddOrSet, kDelete } mode = Mode::kSet;
  if (expr.rfind("++", 0) == 0) {
    mode = Mode::kAddOrSet;
    expr = expr.substr(2);
  } else if (expr.rfind("+", 0) == 0) {
    mode = Mode::kAdd;
    expr = expr.substr(1);
  } else if (expr.rfind("~", 0) == 0) {
    mode = Mode::kDelete;
    expr = expr.substr(1);
  }
  std::string key = expr, value_text;
  const auto eq = expr.find('=');
  if (eq != std::string::npos) {
    key = expr.substr(0, eq);
    value_text = expr.substr(eq + 1);
  } else if (mode != Mode::kDelete) {
    throw Error("override '" + expression + "': expected key=value (or ~key to delete)");
  }
  if (key.empty()) throw Error("override '" + expression + "': empty key");
  const auto parts = split_path(key);

  // Walk to the parent map, creating maps only when adding.
  YAML::Node parent = tree.root;
  std::string walked;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    walked = detail::join_path(walked, parts[i]);
    const YAML::Node& cp = parent;
    // Const lookups never create keys; a missing key gives an invalid handle, so test first.
    const bool missing = !cp[parts[i]].IsDefined() || cp[parts[i]].IsNull();
    if (missing) {
      if (mode != Mode::kAdd && mode != Mode::kAddOrSet)
        throw ConfigError(key,
                          "no such key to " + std::string(mode == Mode::kDelete ? "delete" : "override") +
                              " (use +" + key + "=VALUE to add one)",
                          kSource);
      parent[parts[i]] = YAML::Node(YAML::NodeType::Map);
    }
    YAML::Node child = cp[parts[i]];
    if (!child.IsMap())
      throw ConfigError(
          walked, "is " + detail::describe(child) + ", not a map, so '" + key + "' cannot be set", kSource);
    parent.reset(child);
  }
  const std::string& leaf = parts.back();
  const YAML::Node& cparent = parent;
  const bool exists = cparent[leaf].IsDefined();
  switch (mode) {
    case Mode::kDelete:
      if (!exists) throw ConfigError(key, "no such key to delete", kSource);
      parent.remove(leaf);
      erase_origins(tree.origins, key);
      return;
    case Mode::kSet:
      if (!exists)
        throw ConfigError(key, "no such key to override (use +" + key + "=VALUE to add one)", kSource);
      break;
    case Mode::kAdd:
      if (exists) throw ConfigError(key, "already exists (use " + key + "=VALUE to override)", kSource);
      break;
    case Mode::kAddOrSet: break;
  }
  YAML::Node value = parse_yaml(value_text, "override '" + expression + "'");
  erase_origins(tree.origins, key);
  parent[leaf] = value;
  record_origins(tree.origins, value, key, kSource);
}

void resolve_interpolations(ConfigTree& tree) {
  // state: 0 unvisited, 1 in progress, 2 done (per leaf path)
  std::map<std::string, int> state;
  std::function<void(YAML::Node, const std::string&)> resolve_node;
  std::function<YAML::Node(const std::string&, const std::string&)> interpolate;
  auto needs_interpolation = [](const YAML::Node& n) {
    return n.IsScalar() && n.Scalar().find(kInterpOpen) != std::string::npos;
  };
  // Replaces the value at a dotted path (its parent exists).
  auto assign = [&](const std::string& dotted, const YAML::Node& value) {
    const auto dot = dotted.rfind('.');
    YAML::Node parent = dot == std::string::npos ? tree.root : find(tree.root, dotted.substr(0, dot));
    parent[dot == std::string::npos ? dotted : dotted.substr(dot + 1)] = value;
  };

  auto lookup = [&](const std::string& ref, const std::string& from) -> YAML::Node {
    if (ref.rfind("env:", 0) == 0) {
      std::string name = ref.substr(4), fallback;
      bool has_fallback = false;
      if (auto comma = name.find(','); comma != std::string::npos) {
        fallback = name.substr(comma + 1);
        name = name.substr(0, comma);
        has_fallback = true;
      }
      const char* v = std::getenv(name.c_str());
      if (v) return YAML::Node(std::string(v));
      if (has_fallback) return YAML::Node(fallback);
      throw ConfigError(from, "environment variable '" + name + "' is not set", tree.origin_of(from));
    }
    // Walk the path, resolving interpolated values on the way: `${a.c}` with `a: ${b}` needs
    // `a` resolved first, whatever order the keys come in.
    const auto parts = split_path(ref);
    std::string prefix;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      prefix = detail::join_path(prefix, parts[i]);
      YAML::Node target = find(tree.root, prefix);
      if (!target.IsDefined())
        throw ConfigError(from, "interpolation ${" + ref + "} names a key that does not exist",
                          tree.origin_of(from));
      const bool last = i + 1 == parts.size();
      if (needs_interpolation(target) || (last && state[prefix] == 1)) {
        if (state[prefix] == 1)
          throw ConfigError(from, "interpolation cycle through ${" + ref + "}", tree.origin_of(from));
        state[prefix] = 1;
        assign(prefix, interpolate(target.Scalar(), prefix));
        state[prefix] = 2;
      } else if (last && state[prefix] == 0) {
        resolve_node(target, prefix);
      }
    }
    return find(tree.root, ref);
  };

  // A scalar holding ${...}: a whole-value reference keeps the target's type (it may be a map
  // or a list); references inside text are replaced by the target's scalar text.
  interpolate = [&](const std::string& s, const std::string& path) -> YAML::Node {
    if (s.rfind(kInterpOpen, 0) == 0 && s.back() == '}' && s.find(kInterpOpen, 2) == std::string::npos &&
        s.find('}') == s.size() - 1)
      return deep_copy(lookup(s.substr(2, s.size() - 3), path));
    std::string out;
    std::size_t pos = 0;
    while (true) {
      const auto open = s.find(kInterpOpen, pos);
      if (open == std::string::npos) {
        out += s.substr(pos);
        break;
      }
      const auto close = s.find('}', open);
      if (close == std::string::npos)
        throw ConfigError(path, "unterminated ${ in '" + s + "'", tree.origin_of(path));
      const std::string ref = s.substr(open + 2, close - open - 2);
      out += s.substr(pos, open - pos);
      YAML::Node v = lookup(ref, path);
      if (!v.IsScalar())
        throw ConfigError(path,
                          "${" + ref + "} is " + detail::describe(v) + " and cannot be part of a string",
                          tree.origin_of(path));
      out += v.Scalar();
      pos = close + 1;
    }
    return YAML::Node(out);
  };
  resolve_node = [&](YAML::Node node, const std::string& path) {
    if (state[path] == 2) return;
    state[path] = 1;
    if (node.IsMap()) {
      std::vector<std::string> keys;
      for (const auto& kv : node) keys.push_back(kv.first.Scalar());
      for (const auto& key : keys) {
        const std::string child_path = detail::join_path(path, key);
        const YAML::Node& cnode = node;
        YAML::Node child = cnode[key];
        if (needs_interpolation(child)) {
          if (state[child_path] == 2) continue;  // already resolved through a reference
          state[child_path] = 1;
          node[key] = interpolate(child.Scalar(), child_path);
          state[child_path] = 2;
        } else if (child.IsMap() || child.IsSequence()) {
          resolve_node(child, child_path);
        }
      }
    } else if (node.IsSequence()) {
      for (std::size_t i = 0; i < node.size(); ++i) {
        YAML::Node item = node[i];
        const std::string item_path = path + "[" + std::to_string(i) + "]";
        if (needs_interpolation(item))
          node[i] = interpolate(item.Scalar(), item_path);
        else if (item.IsMap() || item.IsSequence())
          resolve_node(item, item_path);
      }
    }
    state[path] = 2;
  };
  resolve_node(tree.root, "");
}

namespace {
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

void Reader::finish() const {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    if (seen_.count(key)) continue;
    std::string best;
    std::size_t best_d = 3;  // suggest only close spellings
    std::string known;
    for (const auto& k : seen_) {
      known += (known.empty() ? "" : ", ") + k;
      const std::size_t d = edit_distance(key, k);
      if (d < best_d) {
        best_d = d;
        best = k;
      }
    }
    std::string msg = "unknown key";
    if (!best.empty()) msg += " (did you mean '" + best + "'?)";
    msg += "; known keys here: " + known;
    throw ConfigError(detail::join_path(path_, key), msg);
  }
}

ConfigTree compose(const YAML::Node& defaults, const std::vector<std::string>& files,
                   const std::vector<std::string>& overrides) {
  ConfigTree tree;
  merge(tree, defaults, "defaults");
  for (const auto& f : files) {
    std::vector<std::string> stack;
    load_recursive(tree, f, stack);
  }
  for (const auto& o : overrides) apply_override(tree, o);
  resolve_interpolations(tree);
  return tree;
}

std::string dump(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

void save_run_config(const std::string& run_dir, const YAML::Node& resolved,
                     const std::vector<std::string>& overrides) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) throw Error("cannot create run directory '" + run_dir + "': " + ec.message());
  write_file_atomic((fs::path(run_dir) / "config.yaml").string(), dump(resolved));
  YAML::Node list(YAML::NodeType::Sequence);
  for (const auto& o : overrides) list.push_back(o);
  write_file_atomic((fs::path(run_dir) / "overrides.yaml").string(), dump(list));
}

std::vector<std::string> changed_keys(const YAML::Node& before, const YAML::Node& after) {
  std::vector<std::string> out;
  std::function<void(const YAML::Node&, const YAML::Node&, const std::string&)> walk =
      [&](const YAML::Node& a, const YAML::Node& b, const std::string& path) {
        if (!a.IsDefined() || !b.IsDefined()) {
          if (a.IsDefined() != b.IsDefined()) out.push_back(path);
          return;
        }
        if (a.IsMap() && b.IsMap()) {
          std::set<std::string> keys;
          for (const auto& kv : a) keys.insert(kv.first.Scalar());
          for (const auto& kv : b) keys.insert(kv.first.Scalar());
          for (const auto& k : keys) {
            const YAML::Node ca = a[k], cb = b[k];
            walk(ca, cb, detail::join_path(path, k));
          }
          return;
        }
        if (dump(a) != dump(b)) out.push_back(path);
      };
  walk(before, after, "");
  return out;
}

}  // namespace losatok::config
