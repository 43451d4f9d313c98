#!/usr/bin/python3
"""UTMOS22 strong learner (Saeki et al. 2022, sarulab-speech/UTMOS22 `strong/`, as the standalone
tarepan/SpeechMOS `utmos22_strong` runs it) in plain PyTorch, written from the published
architectures, as the reference for the C++ port (src/models/utmos.cpp). Weights are a
{name: tensor} dict with the names of SpeechMOS's `utmos22_strong_step7459_v1.pt` (a plain
state dict); every size comes from the shapes.

wave (B, T) at 16 kHz, raw (wav2vec 2.0 base takes no input normalisation)
  -> fairseq wav2vec 2.0, extractor mode "default": conv stack (no bias; GroupNorm(C, C) after
     the first conv only; exact GELU), (B, C, F) -> transpose -> layer_norm -> post_extract_proj
  -> encoder: x + GELU(SamePad(weight-normed grouped pos_conv(x))) -> layer_norm (post-LN, so
     before the layers) -> padded to an even frame count with the pad key masked -> post-LN
     transformer layers (attention, residual, self_attn_layer_norm; fc1, GELU, fc2, residual,
     final_layer_norm) -> pad removed                           ssl (B, F, D)
  -> cat(ssl, domain_emb, judge_emb) per frame (the rows of the official tables for domain 0
     and judge 288, which SpeechMOS stores as (1, E) parameters)
  -> BLSTM (1 layer, batch_first) -> projection Linear, ReLU, Linear -> frame scores (B, F)
  -> mean over frames * 2 + 3                                    MOS (B,)

The official Lightning checkpoint (`epoch=3-step=7459.ckpt`, the UTMOS-demo Space) holds the same
weights under other names; `from_lightning` maps them.

Importing this module has no side effects.
"""

import torch
import torch.nn.functional as F

LN_EPS = 1e-5
JUDGE_ID = 288
DOMAIN_ID = 0


def _conv_layer_count(w):
    n = 0
    while f"wav2vec2.feature_extractor.conv_layers.{n}.0.weight" in w:
        n += 1
    return n


def pos_conv_weight(g, v):
    # torch.nn.utils.weight_norm(dim=2): the norm runs over every dimension but the kernel's.
    return g * v / v.norm(dim=(0, 1), keepdim=True)


def wav2vec2(w, wave, heads, p="wav2vec2."):
    """(B, T) -> (B, F, D): the last transformer layer's output (features_only, no mask)."""
    x = wave.unsqueeze(1)
    for i in range(_conv_layer_count(w)):
        k = f"{p}feature_extractor.conv_layers.{i}."
        conv_w = w[k + "0.weight"]
        stride = 5 if conv_w.shape[2] == 10 else 2  # wav2vec 2.0's (10, 5), (3, 2) x 4, (2, 2) x 2
        x = F.conv1d(x, conv_w, stride=stride)
        if i == 0:
            x = F.group_norm(x, x.shape[1], w[k + "2.weight"], w[k + "2.bias"], LN_EPS)
        x = F.gelu(x)
    x = x.transpose(1, 2)
    d_in = x.shape[-1]
    x = F.layer_norm(x, (d_in,), w[p + "layer_norm.weight"], w[p + "layer_norm.bias"], LN_EPS)
    x = F.linear(x, w[p + "post_extract_proj.weight"], w[p + "post_extract_proj.bias"])

    e = p + "encoder."
    d = x.shape[-1]
    v = w[e + "pos_conv.0.weight_v"]
    kernel, groups = v.shape[2], d // v.shape[1]
    conv = F.conv1d(x.transpose(1, 2), pos_conv_weight(w[e + "pos_conv.0.weight_g"], v),
                    w[e + "pos_conv.0.bias"], padding=kernel // 2, groups=groups)
    if kernel % 2 == 0:
        conv = conv[:, :, :-1]  # SamePad
    x = x + F.gelu(conv).transpose(1, 2)
    x = F.layer_norm(x, (d,), w[e + "layer_norm.weight"], w[e + "layer_norm.bias"], LN_EPS)

    b, frames, _ = x.shape
    pad = frames % 2  # fairseq's required_seq_len_multiple = 2
    mask = None
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        mask = torch.zeros(b, frames + pad, dtype=torch.bool)
        mask[:, -pad:] = True
    n = 0
    while f"{e}layers.{n}.fc1.weight" in w:
        x = layer(w, f"{e}layers.{n}.", x, heads, mask)
        n += 1
    return x[:, :frames]


def layer(w, p, x, heads, mask):
    """fairseq TransformerSentenceEncoderLayer, layer_norm_first=False. x (B, F, D)."""
    b, f, d = x.shape
    hd = d // heads

    def lin(name, t):
        return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

    q = lin("self_attn.q_proj", x) * hd ** -0.5
    k = lin("self_attn.k_proj", x)
    v = lin("self_attn.v_proj", x)
    q, k, v = (t.view(b, f, heads, hd).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2)  # (B, H, F, F)
    if mask is not None:
        s = s.masked_fill(mask[:, None, None, :], float("-inf"))
    a = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, f, d)
    x = x + lin("self_attn.out_proj", a)
    x = F.layer_norm(x, (d,), w[p + "self_attn_layer_norm.weight"], w[p + "self_attn_layer_norm.bias"], LN_EPS)
    h = lin("fc2", F.gelu(lin("fc1", x)))
    x = x + h
    return F.layer_norm(x, (d,), w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"], LN_EPS)


def blstm(w, x, p="blstm."):
    """One bidirectional layer, batch_first: (B, F, In) -> (B, F, 2H), written out step by step."""
    def run(sfx, seq):
        wi, wh = w[p + "weight_ih_l0" + sfx], w[p + "weight_hh_l0" + sfx]
        bias = w[p + "bias_ih_l0" + sfx] + w[p + "bias_hh_l0" + sfx]
        hid = wh.shape[1]
        h = torch.zeros(seq.shape[0], hid)
        c = torch.zeros(seq.shape[0], hid)
        out = []
        for t in range(seq.shape[1]):
            g = seq[:, t] @ wi.T + h @ wh.T + bias
            i, f, gg, o = g.chunk(4, dim=1)  # PyTorch's gate order
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, 1)

    fwd = run("", x)
    bwd = run("_reverse", x.flip(1)).flip(1)
    return torch.cat([fwd, bwd], -1)


def head(w, ssl):
    """ssl (B, F, D) -> frame scores (B, F), before the mean and the affine map."""
    b, f, _ = ssl.shape
    dom = w["domain_emb"].view(1, 1, -1).expand(b, f, -1)
    judge = w["judge_emb"].view(1, 1, -1).expand(b, f, -1)
    h = blstm(w, torch.cat([ssl, dom, judge], 2))
    h = F.relu(F.linear(h, w["projection.0.weight"], w["projection.0.bias"]))
    return F.linear(h, w["projection.2.weight"], w["projection.2.bias"]).squeeze(-1)


def predict(w, wave, heads):
    """wave (B, T) -> (ssl (B, F, D), frame scores (B, F), MOS (B,))."""
    with torch.no_grad():
        ssl = wav2vec2(w, wave, heads)
        frames = head(w, ssl)
        return ssl, frames, frames.mean(1) * 2 + 3


def from_lightning(state_dict):
    """The official UTMOS22 Lightning `state_dict` (config wo_phoneme) -> SpeechMOS names."""
    out = {}
    for name, t in state_dict.items():
        if name.startswith("feature_extractors.0.ssl_model."):
            out["wav2vec2." + name[len("feature_extractors.0.ssl_model."):]] = t
        elif name == "feature_extractors.1.embedding.weight":
            out["domain_emb"] = t[DOMAIN_ID:DOMAIN_ID + 1].clone()
        elif name == "output_layers.0.judge_embedding.weight":
            out["judge_emb"] = t[JUDGE_ID:JUDGE_ID + 1].clone()
        elif name.startswith("output_layers.0.decoder_rnn."):
            out["blstm." + name[len("output_layers.0.decoder_rnn."):]] = t
        elif name.startswith("output_layers.1.net."):
            i, rest = name[len("output_layers.1.net."):].split(".", 1)
            out[f"projection.{ {'0': 0, '3': 2}[i] }.{rest}"] = t
    return out
