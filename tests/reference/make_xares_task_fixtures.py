#!/usr/bin/python3
"""The X-ARES task table as X-ARES itself builds it, for tests/eval/test_xares_tasks.cpp.

Usage: /usr/bin/python3 tests/reference/make_xares_task_fixtures.py XARES_CHECKOUT OUT_DIR
  (XARES_CHECKOUT: a checkout of https://github.com/jimbozhang/xares; the tests read
  tests/fixtures/xares_tasks.json)

Runs X-ARES' own src/xares/task.py (TaskConfig, XaresTask's k-fold rule) and every public task's
src/tasks/*_task.py with stand-ins for the modules a config does not need (webdataset, loguru,
tqdm, the trainer and models), an encoder stand-in with a 40 ms hop, and writes
OUT_DIR/xares_tasks.json:
  commit                 the checkout's git commit
  hop_ms                 the encoder stand-in's hop (frame targets below)
  tasks: [{
    file, name, formal_name, task_type, metric, eval_weight, criterion ("CrossEntropyLoss", ... or
    "BCEWithLogitsLoss(pos_weight=W)"), pos_weight, crop_length, epochs, batch_size_train,
    learning_rate, do_knn, output_dim, metric_args (segment_length_in_s), zenodo_id,
    train_split / valid_split / test_split (null for k-fold tasks, as XaresTask sets them),
    k_fold_splits, audio_tar_name_of_split ({split or fold: glob}),
    class_names            the label map's names in id order (where the task's label processor
                           closes over a `class_label_maps`; MAESTRO's notes and LibriCount's counts
                           as decimal strings)
    samples: [{json, expect}]  sample label JSON texts and what X-ARES makes of them:
        clip        {"label": id}
        multilabel  {"labels": [ids of the many-hot vector's ones]}
        frame       {"runs": [[class, first_frame, end_frame), ...]} of the target at a 40 ms hop
                    (X-ARES' sec_to_frames: ceil(seconds / 0.04)), {"frames": T}
        contrastive {"captions": [...]} (data_merge_function_clotho's output)
        asr         {"transcript": ...} (what the trainer reads: label["trans"])
        or {"error": "KeyError"} (the exception's type) where X-ARES raises on the sample
  }]
The five private tasks (finger_snap, inside_outside_car, key_scratching, liveenv,
subway_broadcast) are left out: their data is not published.
"""
import json
import os
import subprocess
import sys
import types

import torch

PRIVATE = {"finger_snap_task.py", "inside_outside_car_task.py", "key_scratching_task.py", "liveenv_task.py",
           "subway_broadcast_task.py"}
HOP_MS = 40


def stub_modules():
    """Stand-ins for what task.py and the task files import but a config never calls."""
    class Anything:
        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            return Anything()

        def __getattr__(self, name):
            return Anything()

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__getattr__ = lambda attr: Anything()
        for k, v in attrs.items():
            setattr(m, k, v)
        sys.modules[name] = m
        return m

    module("webdataset")
    module("tqdm", tqdm=Anything)
    module("loguru", logger=Anything())
    xares = module("xares")
    xares.__path__ = []
    module("xares.audiowebdataset")
    module("xares.metrics", METRICS_TYPE=str)
    module("xares.models")
    module("xares.models.asr")
    module("xares.models.retrival")
    module("xares.models.simple")
    module("xares.trainer")
    module("xares.utils")

    class XaresSettings:
        env_root = "./env"
        audio_ready_filename = ".audio_tar_ready"
        encoded_ready_filename = ".encoded_tar_ready"

    module("xares.common", XaresSettings=XaresSettings)


def load_source(name, path):
    m = types.ModuleType(name)
    m.__file__ = path
    sys.modules[name] = m
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), m.__dict__)
    return m


class Encoder:
    hop_size_in_ms = HOP_MS
    sampling_rate = 16000
    output_dim = 8


# Label JSON of each task as its Zenodo shards hold it (the keys its label processor reads), with
# unknown labels and missing keys among them.
SAMPLES = {
    "asvspoof2015": [{"binary_spoof": "human"}, {"binary_spoof": "spoof"}, {"binary_spoof": "bonafide"}],
    "clotho": [{"caption_1": "A dog barks twice.", "caption_2": "Rain falls on a tin roof.",
                "caption_3": "Someone walks on gravel.", "caption_4": "A car passes by.",
                "caption_5": "Birds sing in the morning \u2013 loudly."}],
    "cremad": [{"label": "H"}, {"label": "S"}, {"label": "A"}, {"label": "F"}, {"label": "D"}, {"label": "N"},
               {"label": "X"}, {"emotion": "H"}],
    "desed": [[{"onset": 0.5, "offset": 2.25, "label": "Speech,Dog"},
               {"onset": 3.1, "offset": 9.99, "label": "Frying"},
               {"onset": 0.0, "offset": 0.04, "label": "Cat"}],
              [], [{"onset": 1.0, "offset": 2.0, "label": "Speech,Bird"}]],
    "esc50": [{"label": 0}, {"label": 49}, {"label": 17}],
    "fluentspeechcommands": [{"transcription": "Turn the lights on", "action": "activate"},
                             {"transcription": "That\u2019s too loud"},
                             {"transcription": "OK now switch the main language to German"},
                             {"transcription": "Turn the lights on please"}],
    "freemusicarchive": [{"genre": "Hip-Hop"}, {"genre": "Instrumental"}, {"genre": "Jazz"}],
    "fsd50k": [{"soundevent": "Bark;Dog;Domestic_animals_and_pets;Animal"}, {"soundevent": "Zipper_(clothing)"},
               {"soundevent": "Bark;Bark"}, {"soundevent": "Bark;Purr_loudly"}],
    "fsdkaggle2018": [{"sound": "Hi-hat"}, {"sound": "Finger_snapping"}, {"sound": "Cello"}, {"sound": "cello"}],
    "gtzan_genre": [{"genre": "blues"}, {"genre": "rock"}, {"genre": "jazz"}, {"genre": "Jazz"}],
    "libricount": [{"num_speakers": 0}, {"num_speakers": 10}, {"num_speakers": 3}, {"num_speakers": 11},
                   {"num_speakers": "3"}],
    "librispeech": [{"speaker": 19, "gender": "F", "trans": "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED"},
                    {"speaker": 19, "gender": "F"}],
    "librispeechmalefemale": [{"speaker": 19, "gender": "F", "trans": "A"}, {"speaker": 26, "gender": "M"},
                              {"speaker": 1, "gender": "m"}, {"speaker": 1}],
    "maestro": [[{"start": 0.1, "end": 0.63, "note": 60, "velocity": 80},
                 {"start": 0.5, "end": 1.2, "note": 21}, {"start": 1.0, "end": 1.05, "note": 107},
                 {"start": 0.3, "end": 0.9, "note": 60}],
                [{"start": 0.0, "end": 0.5, "note": 108}]],
    "nsynthinstument": [{"instrument_family_str": "guitar"}, {"instrument_family_str": "synth_lead"},
                        {"instrument_family_str": "drum"}],
    "ravdess": [{"emotion": "neutral"}, {"emotion": "surprised"}, {"emotion": "calm"}, {"emotion": "bored"}],
    "speechcommandsv1": [{"labels": "sheila"}, {"labels": "eight"}, {"labels": "yes"}, {"labels": "_silence_"}],
    "urbansound8k": [{"soundevent": "air_conditioner"}, {"soundevent": "street_music"}, {"soundevent": "siren"},
                     {"soundevent": "rain"}],
    "vocalimitations": [{"imitation": "000Animal_Domestic animals_ pets_Cat_Growling_reference"},
                        {"imitation": "301Source-ambiguous sounds_Surface contact_Scratch_reference"},
                        {"imitation": "Cat"}],
    "vocalsound": [{"label": "laughter"}, {"label": "sniff"}, {"label": "cough"}, {"label": "yawn"}],
    "voxceleb1": [{"speakerid": "id10003"}, {"speakerid": "id11251"}, {"speakerid": "id10946"},
                  {"speakerid": "id09999"}],
    "voxlingua33": [{"labels": "uk"}, {"labels": "sr"}, {"labels": "en"}, {"labels": "xx"}],
}


def runs(target):
    """[(class, first, end)] of the ones in a (C, T) target, row by row."""
    out = []
    for c, row in enumerate(target.tolist()):
        t = 0
        while t < len(row):
            if row[t] == 1.0:
                s = t
                while t < len(row) and row[t] == 1.0:
                    t += 1
                out.append([c, s, t])
            else:
                t += 1
    return out


def expect(config, sample, merge):
    try:
        if config.task_type == "contrastive":
            return {"captions": [c for _, c in merge(iter([(None, sample)]))]}
        if config.task_type == "asr":
            return {"transcript": sample["trans"]}
        y = config.label_processor(sample)
        if config.task_type == "frame":
            return {"runs": runs(y), "frames": int(y.shape[1])}
        if isinstance(y, list):
            return {"labels": [i for i, v in enumerate(y) if v == 1.0]}
        return {"label": int(y)}
    except Exception as e:  # what X-ARES' data loader would raise on this sample
        return {"error": type(e).__name__}


def class_names(config):
    fn = config.label_processor
    if fn is None or fn.__closure__ is None:
        return None
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
        if name == "class_label_maps":
            m = cell.cell_contents
            names = [None] * len(m)
            for k, v in m.items():
                assert 0 <= v < len(m) and names[v] is None, (config.name, k, v)
                names[v] = str(k)
            return names
    return None


def main():
    root, out_dir = sys.argv[1], sys.argv[2]
    stub_modules()
    sys.path.insert(0, os.path.join(root, "src"))
    task_py = load_source("xares.task", os.path.join(root, "src/xares/task.py"))
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    tasks = []
    tasks_dir = os.path.join(root, "src/tasks")
    for file in sorted(os.listdir(tasks_dir)):
        if not file.endswith("_task.py") or file in PRIVATE:
            continue
        mod = load_source("task_" + file[:-3], os.path.join(tasks_dir, file))
        (make,) = [getattr(mod, n) for n in dir(mod) if n.endswith("_config") and callable(getattr(mod, n))]
        config = make(Encoder())
        assert not config.private and not config.disabled, file
        kfold = config.k_fold_splits is not None
        crit = config.criterion
        pos_weight = 1.0
        if isinstance(crit, torch.nn.BCEWithLogitsLoss):
            pos_weight = float(crit.pos_weight)
            crit = f"BCEWithLogitsLoss(pos_weight={pos_weight:g})"
        merge = config.merge_processor
        samples = [{"json": json.dumps(s, ensure_ascii=False), "expect": expect(config, s, merge)}
                   for s in SAMPLES[config.name]]
        tasks.append({
            "file": file, "name": config.name, "formal_name": config.formal_name, "task_type": config.task_type,
            "metric": config.metric, "eval_weight": config.eval_weight, "criterion": crit, "pos_weight": pos_weight,
            "crop_length": config.crop_length, "epochs": config.epochs, "batch_size_train": config.batch_size_train,
            "learning_rate": config.learning_rate, "do_knn": config.do_knn, "output_dim": config.output_dim,
            "segment_length_in_s": config.metric_args.get("segment_length_in_s"),
            "zenodo_id": config.zenodo_id,
            # XaresTask.__init__ sets the three splits to None for k-fold tasks.
            "train_split": None if kfold else config.train_split,
            "valid_split": None if kfold else config.valid_split,
            "test_split": None if kfold else config.test_split,
            "k_fold_splits": [str(k) for k in config.k_fold_splits] if kfold else None,
            "audio_tar_name_of_split": {str(k): v for k, v in config.audio_tar_name_of_split.items()},
            "class_names": class_names(config),
            "samples": samples,
        })
    assert task_py.TaskConfig is not None
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "xares_tasks.json"), "w") as f:
        json.dump({"commit": commit, "hop_ms": HOP_MS, "tasks": tasks}, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(tasks)} tasks from X-ARES {commit}")


if __name__ == "__main__":
    main()
