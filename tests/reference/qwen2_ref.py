#!/usr/bin/python3
"""Qwen2 (Qwen2.5-0.5B, the frozen LLM behind X-ARES's ASR task) and its Hugging Face
tokenizer.json, written from the published architecture and file formats, as the reference for
the C++ ports (src/models/qwen2.cpp, src/data/hf_tokenizer.cpp). Debian ships neither
transformers nor tokenizers, so both are re-derived here:

Decoder (transformers' Qwen2ForCausalLM, Hugging Face key names): token embedding; per layer
x + attn(rms(x)), then x + mlp(rms(x)); a final RMSNorm; lm_head (tied to the embedding when
tie_word_embeddings). RMSNorm: variance in float32, w * (x * rsqrt(var + eps)).to(dtype).
Attention: q/k/v with bias, o without; RoPE with rotate_half, inv_freq = 1 / theta **
(arange(0, d, 2) / d) in float32 and cos / sin computed in float32 then cast to the activations'
dtype; grouped-query attention (each kv head serves heads / kv_heads query heads); causal
attention combined with the key padding mask, rows without any key to attend to (only leading
padding) attend to all keys, as transformers' _unmask_unattended did, so they stay finite.
MLP: down(silu(gate(x)) * up(x)).

Greedy generation as transformers' generate(inputs_embeds=..., attention_mask=..., do_sample=True,
top_k=1, repetition_penalty=p): prompt positions attention_mask.cumsum(-1) - 1 (masked ones set to
1), then one token a step at position (number of mask ones) - 1; the penalty applies to the
tokens generated so far (logit < 0 ? logit * p : logit / p) on float32 logits; argmax; finished
rows emit pad.

Tokenizer (tokenizers' Tokenizer on Qwen2's tokenizer.json): added tokens split out first
(leftmost-longest, literal; the `normalized` ones on the NFC'd text), NFC, then the Split regex
    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
(Isolated), ByteLevel's byte -> printable stand-in map, and BPE merging the adjacent pair of
lowest (rank, position) until none is a merge. \\p{L} / \\p{N}: unicodedata's L* / N*; \\s: the
Unicode White_Space property (Oniguruma's \\s). The regex is run twice here: by hand
(pretokenize) and with Python's `re` over expanded classes (pretokenize_re), and the two must
agree. Decoding: each token's characters mapped back to bytes (a token with a character outside
the map contributes its own UTF-8), then UTF-8 with errors="replace".

Importing this module has no side effects.
"""
import json
import math
import re
import unicodedata

import torch

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

WHITE_SPACE = set(range(0x09, 0x0E)) | {0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} | set(
    range(0x2000, 0x200B))


# ---------------------------------------------------------------------------------------------
# Pre-tokenisation


def char_class(ch):
    """'S' White_Space, 'L' letter, 'N' number, 'O' anything else."""
    if ord(ch) in WHITE_SPACE:
        return "S"
    cat = unicodedata.category(ch)
    return cat[0] if cat[0] in "LN" else "O"


def pretokenize(text):
    """QWEN2_PATTERN's matches, scanned by hand, one alternative after the other."""
    n = len(text)
    cls = [char_class(c) for c in text]
    out, i = [], 0

    def lower_is(k, c):
        # (?i:...): the letters of the contractions match either case; U+017F (long s) folds to s.
        return k < n and (text[k].lower() == c or (c == "s" and text[k] == "\u017f"))

    while i < n:
        end = None
        if text[i] == "'":
            if lower_is(i + 1, "s") or lower_is(i + 1, "t") or lower_is(i + 1, "m") or lower_is(i + 1, "d"):
                end = i + 2
            elif ((lower_is(i + 1, "r") and lower_is(i + 2, "e")) or (lower_is(i + 1, "v") and lower_is(i + 2, "e"))
                  or (lower_is(i + 1, "l") and lower_is(i + 2, "l"))):
                end = i + 3
        if end is None:  # [^\r\n\p{L}\p{N}]?\p{L}+
            k = i
            if cls[i] != "L" and cls[i] != "N" and text[i] not in "\r\n" and i + 1 < n and cls[i + 1] == "L":
                k = i + 1
            if cls[k] == "L":
                end = k
                while end < n and cls[end] == "L":
                    end += 1
        if end is None and cls[i] == "N":  # \p{N}
            end = i + 1
        if end is None:  # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            k = i + 1 if text[i] == " " and i + 1 < n and cls[i + 1] == "O" else i
            if cls[k] == "O":
                end = k
                while end < n and cls[end] == "O":
                    end += 1
                while end < n and text[end] in "\r\n":
                    end += 1
        if end is None:  # whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
            j = i
            while j < n and cls[j] == "S":
                j += 1
            last_newline = max((k for k in range(i, j) if text[k] in "\r\n"), default=None)
            if last_newline is not None:
                end = last_newline + 1
            elif j == n or j - i == 1:
                end = j
            else:
                end = j - 1
        out.append(text[i:end])
        i = end
    return out


def _class_ranges(pred):
    ranges, start = [], None
    for cp in range(0x110000):
        inside = 0xD800 > cp or cp > 0xDFFF
        inside = inside and pred(chr(cp))
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    return "".join(re.escape(chr(a)) if a == b else "%s-%s" % (re.escape(chr(a)), re.escape(chr(b)))
                   for a, b in ranges)


_PATTERN_RE = None


def pretokenize_re(text):
    """QWEN2_PATTERN's Isolated split through Python's `re` engine, the classes spelled out."""
    global _PATTERN_RE
    if _PATTERN_RE is None:
        letters = _class_ranges(lambda c: unicodedata.category(c)[0] == "L")
        numbers = _class_ranges(lambda c: unicodedata.category(c)[0] == "N")
        space = _class_ranges(lambda c: ord(c) in WHITE_SPACE)
        p = QWEN2_PATTERN
        p = p.replace(r"[^\r\n\p{L}\p{N}]", "[^\r\n%s%s]" % (letters, numbers))
        p = p.replace(r"[^\s\p{L}\p{N}]", "[^%s%s%s]" % (space, letters, numbers))
        p = p.replace(r"\p{L}", "[%s]" % letters).replace(r"\p{N}", "[%s]" % numbers)
        p = p.replace(r"(?!\S)", "(?![^%s])" % space).replace(r"\s", "[%s]" % space)
        _PATTERN_RE = re.compile(p)
    out, last = [], 0
    for m in _PATTERN_RE.finditer(text):
        if m.start() > last:
            out.append(text[last:m.start()])
        if m.end() > m.start():
            out.append(m.group())
        last = m.end()
    if last < len(text):
        out.append(text[last:])
    return out


# ---------------------------------------------------------------------------------------------
# Byte-level BPE from tokenizer.json


def byte_symbols():
    """GPT-2's bytes_to_unicode, in its order: (byte, printable stand-in character) pairs."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    pairs, extra = [(b, chr(b)) for b in printable], 256
    for b in range(256):
        if b not in printable:
            pairs.append((b, chr(extra)))
            extra += 1
    return pairs


BYTE_TO_SYMBOL = dict(byte_symbols())
SYMBOL_TO_BYTE = {s: b for b, s in BYTE_TO_SYMBOL.items()}


def to_symbols(text):
    return "".join(BYTE_TO_SYMBOL[b] for b in text.encode("utf-8"))


def count_pairs(words):
    pairs = {}
    for word, count in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + count
    return pairs


def train_bpe(texts, n_merges):
    """A byte-level BPE over `texts` (split by `pretokenize`): each step merges the most frequent
    adjacent pair (ties: the smaller pair). Returns (vocab token -> id, merges [(a, b)])."""
    words = {}
    for t in texts:
        for piece in pretokenize(t):
            w = tuple(to_symbols(piece))
            words[w] = words.get(w, 0) + 1
    vocab = {s: i for i, (_, s) in enumerate(byte_symbols())}
    merges = []
    for _ in range(n_merges):
        pairs = count_pairs(words)
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        new_words = {}
        for w, c in words.items():
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and (w[k], w[k + 1]) == best:
                    out.append(w[k] + w[k + 1])
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return vocab, merges


class Tokenizer:
    """A tokenizer.json of Qwen2's shape (see the module docstring), plus tokenizer_config.json's
    eos / pad tokens when given."""

    def __init__(self, tokenizer_json, tokenizer_config=None):
        j = tokenizer_json
        assert j["normalizer"] is None or j["normalizer"]["type"] == "NFC"
        self.nfc = j["normalizer"] is not None
        model = j["model"]
        assert model["type"] == "BPE"
        self.vocab = dict(model["vocab"])
        self.ignore_merges = bool(model.get("ignore_merges", False))
        self.ranks = {}
        for rank, m in enumerate(model["merges"]):
            a, b = m.split(" ") if isinstance(m, str) else m
            self.ranks[(a, b)] = rank
        self.added = [(t["content"], t["id"], t["special"], t["normalized"]) for t in j["added_tokens"]]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        for content, i, _, _ in self.added:
            self.id_to_token[i] = content
        self.special_ids = {i for _, i, special, _ in self.added if special}
        cfg = tokenizer_config or {}

        def token_of(v):
            return v["content"] if isinstance(v, dict) else v

        def id_of(name):
            v = cfg.get(name)
            return -1 if v is None else self.token_id(token_of(v))

        self.eos_id, self.pad_id = id_of("eos_token"), id_of("pad_token")

    def token_id(self, token):
        for content, i, _, _ in self.added:
            if content == token:
                return i
        return self.vocab[token]

    def normalize(self, text):
        return unicodedata.normalize("NFC", text) if self.nfc else text

    @staticmethod
    def split_added(text, tokens):
        """Leftmost-longest literal matches of `tokens` [(content, id)]: [(text, id or None)]."""
        out, start, i = [], 0, 0
        while i < len(text):
            best = None
            for content, tid in tokens:
                if content and text.startswith(content, i) and (best is None or len(content) > len(best[0])):
                    best = (content, tid)
            if best is None:
                i += 1
                continue
            if i > start:
                out.append((text[start:i], None))
            out.append((best[0], best[1]))
            i += len(best[0])
            start = i
        if start < len(text):
            out.append((text[start:], None))
        return out

    def bpe(self, symbols):
        if self.ignore_merges and symbols in self.vocab:
            return [self.vocab[symbols]]
        parts = [c for c in symbols if c in self.vocab]  # characters outside the vocabulary vanish
        while len(parts) > 1:
            best = None
            for k in range(len(parts) - 1):
                r = self.ranks.get((parts[k], parts[k + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, k)
            if best is None:
                break
            k = best[1]
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text, parse_special=True):
        usable = [(c, i, n) for c, i, special, n in self.added if parse_special or not special]
        raw_tokens = [(c, i) for c, i, n in usable if not n]
        norm_tokens = [(self.normalize(c), i) for c, i, n in usable if n]
        ids = []
        for seg, tid in self.split_added(text, raw_tokens):
            if tid is not None:
                ids.append(tid)
                continue
            for sub, sid in self.split_added(self.normalize(seg), norm_tokens):
                if sid is not None:
                    ids.append(sid)
                    continue
                for piece in pretokenize(sub):
                    ids += self.bpe(to_symbols(piece))
        return ids

    def decode(self, ids, skip_special=True):
        data = bytearray()
        for i in ids:
            if skip_special and i in self.special_ids:
                continue
            tok = self.id_to_token[i]
            if all(c in SYMBOL_TO_BYTE for c in tok):
                data += bytes(SYMBOL_TO_BYTE[c] for c in tok)
            else:
                data += tok.encode("utf-8")
        return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# The decoder


class Config:
    def __init__(self, vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
                 num_key_value_heads, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.tie_word_embeddings = tie_word_embeddings
        self.head_dim = hidden_size // num_attention_heads

    def to_json(self, **extra):
        d = {
            "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "hidden_act": "silu",
            "hidden_size": self.hidden_size, "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size, "max_position_embeddings": 32768,
            "max_window_layers": self.num_hidden_layers, "model_type": "qwen2",
            "num_attention_heads": self.num_attention_heads, "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads, "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta, "sliding_window": 32768,
            "tie_word_embeddings": self.tie_word_embeddings, "use_cache": True, "use_sliding_window": False,
            "vocab_size": self.vocab_size,
        }
        d.update(extra)
        return d


def param_shapes(c):
    """Hugging Face names -> shapes, in the fixed order the formula weights use."""
    h, kv = c.hidden_size, c.num_key_value_heads * c.head_dim
    q = c.num_attention_heads * c.head_dim
    shapes = [("model.embed_tokens.weight", (c.vocab_size, h))]
    for i in range(c.num_hidden_layers):
        p = "model.layers.%d." % i
        shapes += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (q, h)), (p + "self_attn.q_proj.bias", (q,)),
            (p + "self_attn.k_proj.weight", (kv, h)), (p + "self_attn.k_proj.bias", (kv,)),
            (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.v_proj.bias", (kv,)),
            (p + "self_attn.o_proj.weight", (h, q)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (c.intermediate_size, h)),
            (p + "mlp.up_proj.weight", (c.intermediate_size, h)),
            (p + "mlp.down_proj.weight", (h, c.intermediate_size)),
        ]
    shapes.append(("model.norm.weight", (h,)))
    if not c.tie_word_embeddings:
        shapes.append(("lm_head.weight", (c.vocab_size, h)))
    return shapes


def formula_weights(c):
    """Deterministic weights both sides compute: for the k-th tensor of param_shapes (0-based)
    and its flattened index i, in float64 then cast to float32,
        s(k, i) = sin(0.7 * i + 1.3 * k + (i * i mod 97))
    (the i*i mod 97 term keeps the matrices from being rank 2); weights and biases 0.02 * s,
    RMSNorm weights 1 + 0.1 * s."""
    out = {}
    for k, (name, shape) in enumerate(param_shapes(c)):
        n = math.prod(shape)
        i = torch.arange(n, dtype=torch.int64)
        s = torch.sin(0.7 * i.double() + 1.3 * k + torch.remainder(i * i, 97).double())
        w = 1.0 + 0.1 * s if name.endswith("norm.weight") else 0.02 * s
        out[name] = w.float().reshape(shape)
    return out


def rms_norm(x, w, eps):
    dt = x.dtype
    h = x.float()
    var = h.pow(2).mean(-1, keepdim=True)
    return w * (h * torch.rsqrt(var + eps)).to(dt)


def rope(positions, head_dim, theta, dtype):
    """cos, sin (B, T, head_dim) for int64 positions (B, T)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = (inv_freq[None, :, None].expand(positions.shape[0], -1, 1) @ positions[:, None, :].float())
    freqs = freqs.transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attention_mask_4d(mask, batch, t, past):
    """(B, 1, T, past + T) bool: causal and (when given) the key mask (B, past + T); rows with no
    key at all attend to every key."""
    s = past + t
    q = past + torch.arange(t)
    causal = torch.arange(s)[None, :] <= q[:, None]
    m = causal[None, None].expand(batch, 1, t, s)
    if mask is not None:
        m = m & mask.bool()[:, None, None, :]
    return m | ~m.any(-1, keepdim=True)


def hidden_states(sd, c, embeds, mask=None, positions=None, cache=None):
    """Final-norm output (B, T, H). `cache`: a list of per-layer [k, v] (B, kv, S, D), extended."""
    b, t, _ = embeds.shape
    past = cache[0][0].shape[2] if cache else 0
    if positions is None:
        positions = (past + torch.arange(t))[None].expand(b, t)
    cos, sin = rope(positions, c.head_dim, c.rope_theta, embeds.dtype)
    cos, sin = cos[:, None], sin[:, None]
    allowed = attention_mask_4d(mask, b, t, past)
    groups = c.num_attention_heads // c.num_key_value_heads
    x = embeds
    for i in range(c.num_hidden_layers):
        p = "model.layers.%d." % i
        h = rms_norm(x, sd[p + "input_layernorm.weight"], c.rms_norm_eps)

        def proj(name, heads):
            y = torch.nn.functional.linear(h, sd[p + name + ".weight"], sd[p + name + ".bias"])
            return y.view(b, t, heads, c.head_dim).transpose(1, 2)

        q = proj("self_attn.q_proj", c.num_attention_heads)
        k = proj("self_attn.k_proj", c.num_key_value_heads)
        v = proj("self_attn.v_proj", c.num_key_value_heads)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if len(cache) <= i:
                cache.append([k, v])
            else:
                cache[i] = [torch.cat((cache[i][0], k), 2), torch.cat((cache[i][1], v), 2)]
                k, v = cache[i]
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(c.head_dim)
        scores = scores.masked_fill(~allowed, float("-inf"))
        a = torch.softmax(scores, dim=-1) @ v
        a = a.transpose(1, 2).reshape(b, t, c.num_attention_heads * c.head_dim)
        x = x + torch.nn.functional.linear(a, sd[p + "self_attn.o_proj.weight"])
        h = rms_norm(x, sd[p + "post_attention_layernorm.weight"], c.rms_norm_eps)
        gate = torch.nn.functional.linear(h, sd[p + "mlp.gate_proj.weight"])
        up = torch.nn.functional.linear(h, sd[p + "mlp.up_proj.weight"])
        x = x + torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, sd[p + "mlp.down_proj.weight"])
    return rms_norm(x, sd["model.norm.weight"], c.rms_norm_eps)


def lm_head(sd, c, h):
    w = sd["model.embed_tokens.weight"] if c.tie_word_embeddings else sd["lm_head.weight"]
    return torch.nn.functional.linear(h, w)


def logits(sd, c, embeds, mask=None, positions=None, cache=None):
    return lm_head(sd, c, hidden_states(sd, c, embeds, mask, positions, cache))


def embed(sd, ids):
    return torch.nn.functional.embedding(ids, sd["model.embed_tokens.weight"])


def generate_greedy(sd, c, embeds, mask, max_new_tokens, eos_id, pad_id, penalty, margins=None):
    """Generated ids per row, without eos / pad (see the module docstring). `margins`, a list,
    gets each step's smallest gap between the best and second-best score of unfinished rows."""
    b = embeds.shape[0]
    mask = mask.long()
    positions = mask.cumsum(-1) - 1
    positions = positions.masked_fill(mask == 0, 1)
    cache = []
    last = logits(sd, c, embeds, mask, positions, cache)[:, -1].float()
    generated = torch.zeros(b, 0, dtype=torch.long)
    unfinished = torch.ones(b, dtype=torch.bool)
    for step in range(max_new_tokens):
        scores = last.clone()
        if penalty != 1.0 and generated.shape[1] > 0:
            got = scores.gather(1, generated)
            scores.scatter_(1, generated, torch.where(got < 0, got * penalty, got / penalty))
        nxt = scores.argmax(-1)
        if margins is not None:
            top = scores.topk(2, -1).values
            margins.append((top[:, 0] - top[:, 1])[unfinished].min().item())
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
        generated = torch.cat((generated, nxt[:, None]), 1)
        unfinished = unfinished & (nxt != eos_id)
        if not unfinished.any() or step + 1 == max_new_tokens:
            break
        mask = torch.cat((mask, torch.ones(b, 1, dtype=torch.long)), 1)
        pos = (mask.sum(-1) - 1)[:, None]
        last = logits(sd, c, embed(sd, nxt[:, None]), mask, pos, cache)[:, -1].float()
    rows = []
    for r in generated.tolist():
        out = []
        for t in r:
            if t == eos_id:
                break
            out.append(t)
        rows.append(out)
    return rows


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
