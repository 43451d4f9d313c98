#!/usr/bin/python3
"""X-ARES' metrics (jimbozhang/xares src/xares/metrics.py, models/retrival.py), written from what
they compute, without scikit-learn or jiwer, as the reference for src/eval/xares_protocol.cpp:

  average_precision   sklearn's average_precision_score(y_true, y_score) (average="macro"), as
                      ignite's AveragePrecision calls it: per class, thresholds at the distinct
                      scores from the highest, AP = sum_n (R_n - R_{n-1}) P_n; a class without
                      positives has recall 1 everywhere (sklearn's "No positive class found in
                      y_true" branch) and so AP 0; the unweighted mean over classes.
  segment_f1          SegmentF1Metric: per batch sigmoid(logit).round() (0.5 -> 0), max_pool1d
                      over time with kernel = stride = pool (floor) on predictions and targets,
                      rows stacked; sklearn's f1_score micro / macro on the many-hot matrix (a
                      class with no true and no predicted positive: 0, zero_division="warn"). One
                      column is sklearn's binary case: each label present (0 / 1) is a class.
  clap_metrics        a2t / t2a r1 r5 r10 (%), mAP10 (%), meanr, medr over cosine similarities,
                      each clip's num_caps captions consecutive rows; recallatk_r1 = mean r1 / 100.
                      Ranks from a stable descending sort, in float64.
  contrastive_loss    AudioTextContrastiveLoss with embedding regularisation.
  wer_inv             max(0, 1 - WER), lower-cased, jiwer's wer_default transform
                      (re.sub(r"\\s\\s+", " "), strip, split on " "), corpus WER.

Importing this module has no side effects.
"""
import math
import re

import numpy as np
import torch


def binary_average_precision(scores, targets):
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the end of each run of equal scores
    tps = np.cumsum(t)[last].astype(np.float64)
    precision = tps / (last + 1)
    if tps[-1] == 0:
        return 0.0
    recall = tps / tps[-1]
    return max(0.0, float(np.sum(np.diff(np.r_[0.0, recall]) * precision)))


def average_precision(scores, targets):
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.ndim == 1:
        return binary_average_precision(scores, targets)
    return float(np.mean([binary_average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]))


def _pool(x, pool):
    """(B, T, C) -> (B * T // pool, C): max over time windows, as max_pool1d on (B, C, T)."""
    return torch.nn.functional.max_pool1d(x.transpose(-2, -1), kernel_size=pool).transpose(-2, -1).flatten(0, 1)


def _f1(tp, fp, fn):
    d = 2 * tp + fp + fn
    return 0.0 if d == 0 else 2.0 * tp / d


def segment_f1(logits_batches, target_batches, pool, average):
    preds, tars = [], []
    for logits, tar in zip(logits_batches, target_batches):
        preds.append(_pool(logits.sigmoid().round(), pool))
        tars.append(_pool(tar, pool))
    pred = torch.cat(preds).long().numpy()
    tar = torch.cat(tars).long().numpy()
    if pred.shape[1] == 1:  # sklearn: binary targets, every present label a class
        pred, tar = pred[:, 0], tar[:, 0]
        counts = [(int(np.sum((pred == k) & (tar == k))), int(np.sum((pred == k) & (tar != k))),
                   int(np.sum((pred != k) & (tar == k)))) for k in sorted(set(pred) | set(tar))]
    else:
        counts = [(int(np.sum(pred[:, c] & tar[:, c])), int(np.sum(pred[:, c] & (1 - tar[:, c]))),
                   int(np.sum((1 - pred[:, c]) & tar[:, c]))) for c in range(pred.shape[1])]
    if average == "micro":
        return _f1(*[sum(c[i] for c in counts) for i in range(3)])
    return float(np.mean([_f1(*c) for c in counts]))


def _positions(logits, truth):
    """Per row, where column truth[row] lands in a stable descending sort of the row."""
    order = torch.sort(logits, dim=1, descending=True, stable=True)[1]
    return (order == truth.view(-1, 1)).nonzero()[:, 1]


def clap_metrics(audio, text, num_caps):
    audio = torch.nn.functional.normalize(audio.double(), dim=1)
    text = torch.nn.functional.normalize(text.double(), dim=1)
    n = len(audio)
    groups = n // num_caps
    clips = audio[::num_caps]  # the first row of each clip's group
    out = {}
    # a2t: each caption's position in its clip's ranking of all captions.
    a2t = (clips @ text.t()).repeat_interleave(num_caps, dim=0)
    pos = _positions(a2t, torch.arange(n)).numpy()
    ranks = np.sort(pos.reshape(groups, num_caps) + 1, axis=1)
    ap = np.arange(1, num_caps + 1) / ranks
    ap[ranks > 10] = 0
    best = pos.reshape(groups, num_caps).min(1)
    out["a2t"] = _direction(best, 100 * float(np.mean(ap.mean(1))))
    # t2a: each caption's clip in the caption's ranking of the clips.
    t2a = text @ clips.t()
    pos = _positions(t2a, torch.arange(groups).repeat_interleave(num_caps)).numpy()
    ap = 1.0 / (pos + 1)
    ap[pos + 1 > 10] = 0
    out["t2a"] = _direction(pos, 100 * float(np.mean(ap)))
    out["recall_at_1"] = (out["a2t"]["r1"] + out["t2a"]["r1"]) / 2 / 100
    return out


def _direction(pos, map10):
    pos = np.asarray(pos, dtype=np.float64)
    d = {f"r{k}": 100.0 * float(np.mean(pos < k)) for k in (1, 5, 10)}
    d["meanr"] = float(pos.mean() + 1)
    d["medr"] = float(math.floor(np.median(pos)) + 1)
    d["mAP10"] = map10
    return d


def contrastive_loss(audio, text, log_scale, embed_regularization=True):
    scale = log_scale.exp()
    targets = torch.eye(len(audio), dtype=audio.dtype)
    a2t = -(torch.log_softmax(scale * audio @ text.t(), dim=1) * targets).sum(1).mean()
    t2a = -(torch.log_softmax(scale * text @ audio.t(), dim=1) * targets).sum(1).mean()
    loss = (a2t + t2a) / 2
    if embed_regularization:
        loss = loss + audio.abs().mean() / audio.pow(2).sum().sqrt() + text.abs().mean() / text.pow(2).sum().sqrt()
    return loss


def _words(text):
    return [w for w in re.sub(r"\s\s+", " ", text).strip().split(" ") if w]


def _edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[-1]


def wer_inv(references, hypotheses):
    refs = [_words(r.lower()) for r in references]
    hyps = [_words(h.lower()) for h in hypotheses]
    errors = sum(_edit_distance(r, h) for r, h in zip(refs, hyps))
    return max(0.0, 1.0 - errors / sum(len(r) for r in refs))


def weighted_average(pairs):
    total = sum(w for _, w in pairs)
    return sum(s * w for s, w in pairs) / total if total != 0 else 0.0
