// A stage's own config section (`sembo:`, `tokenizer:`, `dit:`, `mae:` ...). The stage declares
// the typed struct next to its code; the root config holds the chosen stage's section through
// this type-erased holder, so the core config never names a stage (docs/architecture.md).
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "losatok/core/config.h"
#include "losatok/core/error.h"

namespace losatok {

class StageSection {
 public:
  virtual ~StageSection() = default;
  virtual std::unique_ptr<StageSection> clone() const = 0;
  // Reads the section from `node` (unknown keys and wrong types are errors under `path`) and
  // validates it.
  virtual void read(const YAML::Node& node, const std::string& path) = 0;
  virtual void validate(const std::string& path) const = 0;
  virtual YAML::Node to_yaml() const = 0;
  virtual const std::type_info& type() const = 0;
};

template <class T>
class TypedStageSection final : public StageSection {
 public:
  T value;
  std::unique_ptr<StageSection> clone() const override { return std::make_unique<TypedStageSection>(*this); }
  void read(const YAML::Node& node, const std::string& path) override {
    config::Reader::read_value(node, path, value);
  }
  void validate(const std::string& path) const override { config::validate_all(value, path); }
  YAML::Node to_yaml() const override { return config::to_yaml(value); }
  const std::type_info& type() const override { return typeid(T); }
};

// What the config layer knows of a registered stage: its name (the `stage:` value and the key
// of its section), a one-line summary for help texts, and its section's defaults.
struct StageInfo {
  std::string name;
  std::string summary;
  std::function<std::unique_ptr<StageSection>()> make_section;
  // Keys of the flat layout that moved into this stage's section: {"loss.lambda_rec",
  // "sembo.loss.lambda_rec"}; an old key gets a one-line error naming its new place.
  std::vector<std::pair<std::string, std::string>> moved_keys;
};

// Every stage this build has, in registration order. Defined where the stages are registered
// (src/train/stages.cpp): the config layer sees their sections, never their code.
const std::vector<StageInfo>& registered_stages();
// The one named `name`, or null.
const StageInfo* find_stage(const std::string& name);
// "sembo, tokenizer, dit, mae" for messages.
std::string stage_names();

// The root config's handle on the chosen stage's section: copies deeply, reads and writes
// through the config visitors (config.h's custom-value hooks).
class StageSectionHolder {
 public:
  StageSectionHolder() = default;
  StageSectionHolder(const StageSectionHolder& o) : section_(o.section_ ? o.section_->clone() : nullptr) {}
  StageSectionHolder& operator=(const StageSectionHolder& o) {
    if (this != &o) section_ = o.section_ ? o.section_->clone() : nullptr;
    return *this;
  }
  StageSectionHolder(StageSectionHolder&&) = default;
  StageSectionHolder& operator=(StageSectionHolder&&) = default;

  explicit StageSectionHolder(std::unique_ptr<StageSection> s) : section_(std::move(s)) {}
  bool empty() const { return !section_; }

  // Config visitor hooks.
  void read_config(const YAML::Node& node, const std::string& path) {
    if (section_ && !node.IsNull()) section_->read(node, path);
  }
  YAML::Node write_config() const { return section_ ? section_->to_yaml() : YAML::Node(YAML::NodeType::Map); }
  void validate_config(const std::string& path) const {
    if (section_) section_->validate(path);
  }

  template <class T>
  T* as() {
    return section_ && section_->type() == typeid(T)
               ? &static_cast<TypedStageSection<T>*>(section_.get())->value
               : nullptr;
  }
  template <class T>
  const T* as() const {
    return const_cast<StageSectionHolder*>(this)->as<T>();
  }

 private:
  std::unique_ptr<StageSection> section_;
};

// What a stage's registration in src/train/stages.cpp builds for its config section.
template <class Section>
std::function<std::unique_ptr<StageSection>()> section_of() {
  return [] { return std::make_unique<TypedStageSection<Section>>(); };
}

}  // namespace losatok
