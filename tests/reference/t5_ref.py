#!/usr/bin/python3
"""A T5 encoder (original T5 and T5 v1.1 / Flan-T5) in PyTorch, written from the published
architecture, as the reference for the C++ port. Parameter names follow the Hugging Face
checkpoint layout (`shared.weight`, `encoder.block.{i}.layer.{0,1}...`,
`encoder.final_layer_norm.weight`); `T5Encoder` takes such a {name: tensor} dict directly and
ignores every other key (decoder.*, lm_head.weight, encoder.embed_tokens.weight when
`shared.weight` is present).

Architecture, per block (pre-norm, residual, no biases, no dropout):
    h = h + SelfAttention(RMSNorm(h))   # scores = q k^T (no 1/sqrt(d)), + shared position bias + mask
    h = h + DenseReluDense(RMSNorm(h))  # gated-gelu: wo(gelu_tanh(wi_0 x) * wi_1 x); relu: wo(relu(wi x))
and a final RMSNorm. Only block 0 owns `relative_attention_bias` (num_buckets, num_heads); the
bias it gives, (1, H, L, L), is computed once and added to every layer's scores.

Used by make_t5_fixtures.py; importing it has no side effects.
"""
import math

import torch

MASK_VALUE = torch.finfo(torch.float32).min


def default_config(**kw):
    """An HF-style T5 config dict (the fields our loader reads, plus the usual identifying ones)."""
    cfg = {
        "architectures": ["T5ForConditionalGeneration"],
        "d_ff": 1024,
        "d_kv": 64,
        "d_model": 512,
        "decoder_start_token_id": 0,
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": 8,
        "num_heads": 6,
        "num_layers": 8,
        "output_past": True,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": False,
        "vocab_size": 32128,
    }
    cfg.update(kw)
    return cfg


def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """relative_position = key_pos - query_pos (long tensor). The log branch is computed in float32
    (torch.log on a float32 tensor, divided by the python-double log ratio, which torch rounds to
    float32 as a wrapped scalar), then truncated toward zero, as the reference implementation does."""
    ret = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        ret = ret + (relative_position > 0).to(torch.long) * num_buckets
        n = relative_position.abs()
    else:
        n = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # n == 0 would give log(0) = -inf; it is masked out by is_small (max_exact >= 1).
    large = max_exact + (
        torch.log(n.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return ret + torch.where(is_small, n, large)


def rms_norm(x, weight, eps):
    var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    y = x.to(torch.float32) * torch.rsqrt(var + eps)
    return weight * y.to(weight.dtype)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5Encoder:
    """Functional T5 encoder over a {name: tensor} dict (float32 compute)."""

    def __init__(self, cfg, weights):
        self.cfg = cfg
        self.w = {k: v.to(torch.float32) for k, v in weights.items()}

    def position_bias(self, L):
        cfg = self.cfg
        ctx = torch.arange(L, dtype=torch.long)[:, None]
        mem = torch.arange(L, dtype=torch.long)[None, :]
        buckets = relative_position_bucket(mem - ctx, True, cfg["relative_attention_num_buckets"],
                                           cfg["relative_attention_max_distance"])
        table = self.w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        values = table[buckets]                      # (L, L, H)
        return values.permute(2, 0, 1)[None]         # (1, H, L, L)

    def attention(self, i, x, bias):
        cfg = self.cfg
        p = "encoder.block.%d.layer.0.SelfAttention." % i
        B, L, _ = x.shape
        H, dk = cfg["num_heads"], cfg["d_kv"]

        def heads(t):
            return t.view(B, L, H, dk).transpose(1, 2)

        q = heads(x @ self.w[p + "q.weight"].t())
        k = heads(x @ self.w[p + "k.weight"].t())
        v = heads(x @ self.w[p + "v.weight"].t())
        scores = q @ k.transpose(-1, -2)             # no 1/sqrt(d_kv)
        scores = scores + bias
        attn = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
        out = (attn @ v).transpose(1, 2).reshape(B, L, H * dk)
        return out @ self.w[p + "o.weight"].t()

    def feed_forward(self, i, x):
        p = "encoder.block.%d.layer.1.DenseReluDense." % i
        proj = self.cfg["feed_forward_proj"]
        if proj == "gated-gelu":
            h = gelu_tanh(x @ self.w[p + "wi_0.weight"].t()) * (x @ self.w[p + "wi_1.weight"].t())
        elif proj == "relu":
            h = torch.relu(x @ self.w[p + "wi.weight"].t())
        else:
            raise ValueError("unsupported feed_forward_proj " + proj)
        return h @ self.w[p + "wo.weight"].t()

    def __call__(self, ids, mask=None):
        """ids: (B, L) long; mask: (B, L) bool (True = valid), default all valid.
        Returns last_hidden_state (B, L, d_model), float32. Padded positions are computed too
        (as the reference does) but carry no meaning."""
        cfg = self.cfg
        eps = cfg["layer_norm_epsilon"]
        B, L = ids.shape
        if mask is None:
            mask = torch.ones(B, L, dtype=torch.bool)
        emb = self.w["shared.weight"] if "shared.weight" in self.w else self.w["encoder.embed_tokens.weight"]
        h = emb[ids]
        ext = torch.zeros(B, 1, 1, L, dtype=torch.float32)
        ext = ext.masked_fill(~mask[:, None, None, :], MASK_VALUE)
        bias = self.position_bias(L) + ext           # (B, H, L, L), shared by every layer
        for i in range(cfg["num_layers"]):
            p = "encoder.block.%d.layer." % i
            h = h + self.attention(i, rms_norm(h, self.w[p + "0.layer_norm.weight"], eps), bias)
            h = h + self.feed_forward(i, rms_norm(h, self.w[p + "1.layer_norm.weight"], eps))
        return rms_norm(h, self.w["encoder.final_layer_norm.weight"], eps)


def encoder_shapes(cfg):
    """{name: shape} of every encoder parameter, in HF naming."""
    d, inner, ff = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    s = {"shared.weight": (cfg["vocab_size"], d), "encoder.final_layer_norm.weight": (d,)}
    for i in range(cfg["num_layers"]):
        p = "encoder.block.%d.layer." % i
        for n in "qkv":
            s[p + "0.SelfAttention.%s.weight" % n] = (inner, d)
        s[p + "0.SelfAttention.o.weight"] = (d, inner)
        s[p + "0.layer_norm.weight"] = (d,)
        if cfg["feed_forward_proj"] == "gated-gelu":
            s[p + "1.DenseReluDense.wi_0.weight"] = (ff, d)
            s[p + "1.DenseReluDense.wi_1.weight"] = (ff, d)
        else:
            s[p + "1.DenseReluDense.wi.weight"] = (ff, d)
        s[p + "1.DenseReluDense.wo.weight"] = (d, ff)
        s[p + "1.layer_norm.weight"] = (d,)
    s["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
        cfg["relative_attention_num_buckets"], cfg["num_heads"])
    return s


def random_weights(cfg, gen):
    """Random encoder weights that keep activations O(1): linears N(0, 1/fan_in), embeddings N(0, 1),
    RMSNorm weights 1 + 0.1 N(0, 1), relative bias N(0, 0.5^2). Deterministic given `gen`."""
    w = {}
    for name, shape in sorted(encoder_shapes(cfg).items()):
        if name.endswith("layer_norm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name == "shared.weight":
            t = torch.randn(shape, generator=gen)
        elif name.endswith("relative_attention_bias.weight"):
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        w[name] = t
    return w
