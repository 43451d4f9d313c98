// The X-ARES benchmark's public tasks (github.com/jimbozhang/xares, src/tasks/*_task.py): where
// each task's WebDataset shards lie, its splits or folds, the probe's settings, the metric, and
// how a sample's label JSON becomes its target. The paper's Table 2 reports 15 of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace losatok::eval {

enum class XaresKind { clip, multilabel, frame, contrastive, asr };
const char* xares_kind_name(XaresKind kind);

// What a sample's JSON means for its task.
struct XaresTarget {
  int64_t label = -1;           // clip: class id (-1 = unknown, as CREMA-D's .get(..., -1))
  std::vector<int64_t> labels;  // multilabel: class ids, ascending, each once
  struct Event {
    double onset, offset;
    int64_t label;
  };
  std::vector<Event> events;          // frame: sound / note events in seconds, in the JSON's order
                                      // (a DESED event naming two classes is two events)
  std::vector<std::string> captions;  // contrastive (Clotho: every caption of the clip)
  std::string transcript;             // asr
};

// How a task's label JSON reads (X-ARES' label_processor / merge_processor).
enum class XaresLabelRule {
  class_name,             // json[label_field] names a class; an unknown one is an error
  class_name_or_unknown,  // ... an unknown one is -1 (CREMA-D, VocalSound: .get(x, -1))
  class_index,            // json[label_field] is the class id (ESC-50)
  male_female,            // 0 when json[label_field] == "M", else 1 (LibriSpeech-MF)
  class_name_list,        // json[label_field]: class names joined by ';' (FSD50k)
  sound_events,           // [{onset, offset, label: "A,B"}] (DESED)
  note_events,            // [{start, end, note}] with MIDI notes naming the classes (MAESTRO)
  captions,               // {key: caption, ...}: every value (Clotho)
  transcript,             // json[label_field] is the transcript (LibriSpeech)
};

struct XaresTask {
  std::string name;         // X-ARES TaskConfig.name = the folder under the data root
  std::string formal_name;  // TaskConfig.formal_name
  std::string column;       // the paper's Table 2 column (LS100h CD FSC LibCnt LSMF RAV VocS FMA GTZAN MT
                            // NSynth Clo DES ESC Urb); "" for the tasks outside Table 2
  XaresKind kind = XaresKind::clip;
  std::string metric;  // accuracy | mAP | segmentf1_macro | segmentf1_micro | recallatk_r1 | WER_inv
  // The task's weight in X-ARES' weighted average (its "eval size"). For k-fold tasks X-ARES
  // averages this same number over the folds, so it is the weight there too.
  int64_t eval_weight = 0;
  std::string train_split, valid_split, test_split;  // empty for k-fold tasks
  std::vector<std::string> folds;                    // k-fold ids in order, else empty
  // X-ARES' audio_tar_name_of_split: the shard glob, "{}" standing for the split or fold ("{:02}":
  // the fold in two digits).
  std::string shard_template;
  std::string zenodo_id;    // the Zenodo record X-ARES downloads the shards from
  double crop_seconds = 0;  // 0: whole clip (X-ARES crop_length)
  int epochs = 10, batch_size = 32;
  double lr = 1e-3;
  bool knn = true;                       // do_knn
  int64_t output_dim = 0;                // classes (0: contrastive / asr)
  std::vector<std::string> class_names;  // id -> name where the task has a name map (MAESTRO: "21".."107")
  double pos_weight = 1;                 // frame BCE positive weight (MAESTRO 10)
  double segment_seconds = 0;            // segment-F1 resolution (metric_args segment_length_in_s)
  // DESED: targets span a fixed 10 s; 0: up to the last event's end (MAESTRO).
  double frame_label_seconds = 0;
  XaresLabelRule label_rule = XaresLabelRule::class_name;
  std::string label_field;      // the JSON key label_rule reads ("" for list / caption JSON)
  bool numeric_labels = false;  // the label map's keys are numbers (LibriCount's counts, MAESTRO's notes)

  // The splits X-ARES encodes: the folds, or train, valid, test without repeats.
  std::vector<std::string> splits() const;
  // X-ARES' audio_tar_name_of_split[split_or_fold]; an Error naming the task's splits for another.
  std::string shard_pattern(const std::string& split_or_fold) const;
  // The shards of a split or fold under `data_root`/<name>/ (data::glob_shards).
  std::vector<std::string> shards(const std::string& data_root, const std::string& split_or_fold) const;
  // Parses one sample's JSON text; errors name `where`, the task and the missing / unknown field or
  // label.
  XaresTarget target(const std::string& json_text, const std::string& where) const;
};

// The public X-ARES tasks: the 15 of the paper's Table 2 first, in its column order, then ASV2015,
// FSD50k, FSD18-Kaggle, Speech Commands V1, Vocal Imitation, VoxCeleb1 and VoxLingua33 (the five
// private tasks have no public data).
const std::vector<XaresTask>& xares_tasks();
// By name, formal name or column (exact, else ignoring case); an unknown one is an Error listing
// the names.
const XaresTask& xares_task(const std::string& name_or_column);
// The 15 Table 2 task names in column order.
std::vector<std::string> xares_table2_tasks();

}  // namespace losatok::eval
