"""Reference wav2vec 2.0 / WavLM encoder and UniSpeech's ECAPA-TDNN speaker-verification head, for
the C++ port's fixtures. Written from fairseq's models/wav2vec/wav2vec2.py, s3prl's
upstream/wavlm/{WavLM.py, modules.py, expert.py} and UniSpeech's
downstreams/speaker_verification/models/ecapa_tdnn.py (as F5-TTS copies it in eval/ecapa_tdnn.py),
eval paths only, with their module names so state dicts match the released checkpoints. Sizes are
arguments so tiny random models run through the same code.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- the wav2vec2 / WavLM encoder -------------------------------------------------------------

class TransposeLast(nn.Module):
    def forward(self, x):
        return x.transpose(-2, -1)


class SamePad(nn.Module):
    def __init__(self, kernel):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x):
        return x[:, :, :-self.remove] if self.remove else x


class ConvFeatureExtractionModel(nn.Module):
    """mode "default": GroupNorm(dim, dim) after the first conv only; "layer_norm": a LayerNorm
    over channels after every conv (inside Sequential(TransposeLast, LayerNorm, TransposeLast))."""

    def __init__(self, conv_layers, mode, conv_bias):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        in_d = 1
        for i, (dim, k, stride) in enumerate(conv_layers):
            conv = nn.Conv1d(in_d, dim, k, stride=stride, bias=conv_bias)
            if mode == "layer_norm":
                block = nn.Sequential(conv, nn.Dropout(0.0),
                                      nn.Sequential(TransposeLast(), nn.LayerNorm(dim), TransposeLast()),
                                      nn.GELU())
            elif mode == "default" and i == 0:
                block = nn.Sequential(conv, nn.Dropout(0.0), nn.GroupNorm(dim, dim, affine=True), nn.GELU())
            else:
                block = nn.Sequential(conv, nn.Dropout(0.0), nn.GELU())
            self.conv_layers.append(block)
            in_d = dim

    def forward(self, x):  # (B, N) -> (B, C, T)
        x = x.unsqueeze(1)
        for conv in self.conv_layers:
            x = conv(x)
        return x


class MultiheadAttention(nn.Module):
    """fairseq's self-attention, eval fast path (F.multi_head_attention_forward); with WavLM's
    relative position bias (layer 0's table) and its GRU-like gate from the attention's input."""

    def __init__(self, embed_dim, num_heads, has_relative_attention_bias=False, num_buckets=32,
                 max_distance=128, gru_rel_pos=False):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.has_relative_attention_bias = has_relative_attention_bias
        self.num_buckets, self.max_distance = num_buckets, max_distance
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def _relative_positions_bucket(self, relative_positions):
        num_buckets = self.num_buckets // 2
        buckets = (relative_positions > 0).to(torch.long) * num_buckets
        relative_positions = torch.abs(relative_positions)
        max_exact = num_buckets // 2
        is_small = relative_positions < max_exact
        large = max_exact + (torch.log(relative_positions.float() / max_exact)
                             / math.log(self.max_distance / max_exact)
                             * (num_buckets - max_exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, num_buckets - 1))
        return buckets + torch.where(is_small, relative_positions, large)

    def compute_bias(self, q_len, k_len):
        ctx = torch.arange(q_len, dtype=torch.long)[:, None]
        mem = torch.arange(k_len, dtype=torch.long)[None, :]
        bucket = self._relative_positions_bucket(mem - ctx)
        return self.relative_attention_bias(bucket).permute([2, 0, 1])

    def forward(self, query, position_bias=None):  # (T, B, C)
        tgt_len, bsz, _ = query.size()
        if self.has_relative_attention_bias and position_bias is None:
            position_bias = self.compute_bias(tgt_len, tgt_len).unsqueeze(0).repeat(bsz, 1, 1, 1) \
                .view(bsz * self.num_heads, tgt_len, tgt_len)
        attn_mask_rel_pos = None
        if position_bias is not None:
            attn_mask_rel_pos = position_bias
            if self.gru_rel_pos:
                q = query.transpose(0, 1)
                q = q.view(*(q.size()[:-1] + (self.num_heads, -1))).permute(0, 2, 1, 3)
                b, h, length, _ = q.size()
                gate_a, gate_b = torch.sigmoid(
                    self.grep_linear(q).view(b, h, length, 2, 4).sum(-1, keepdim=False)).chunk(2, dim=-1)
                gate_a_1 = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
                attn_mask_rel_pos = gate_a_1.view(bsz * self.num_heads, -1, 1) * position_bias
            attn_mask_rel_pos = attn_mask_rel_pos.view((-1, tgt_len, tgt_len))
        x, _ = F.multi_head_attention_forward(
            query, query, query, self.embed_dim, self.num_heads, torch.empty([0]),
            torch.cat((self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)), None, None, False, 0.0,
            self.out_proj.weight, self.out_proj.bias, False, None, False, attn_mask_rel_pos,
            use_separate_proj_weight=True, q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight)
        return x, position_bias


class TransformerSentenceEncoderLayer(nn.Module):
    def __init__(self, dim, ffn, heads, layer_norm_first, **attn):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.self_attn = MultiheadAttention(dim, heads, **attn)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x, pos_bias=None):  # (T, B, C)
        residual = x
        if self.layer_norm_first:
            x = self.self_attn_layer_norm(x)
            x, pos_bias = self.self_attn(x, pos_bias)
            x = residual + x
            residual = x
            x = self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
            x = residual + x
        else:
            x, pos_bias = self.self_attn(x, pos_bias)
            x = self.self_attn_layer_norm(residual + x)
            residual = x
            x = self.fc2(F.gelu(self.fc1(x)))
            x = self.final_layer_norm(residual + x)
        return x, pos_bias


class TransformerEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg["embed_dim"]
        conv = nn.Conv1d(dim, dim, cfg["pos_conv_kernel"], padding=cfg["pos_conv_kernel"] // 2,
                         groups=cfg["pos_conv_groups"])
        conv = nn.utils.weight_norm(conv, name="weight", dim=2)
        self.pos_conv = nn.Sequential(conv, SamePad(cfg["pos_conv_kernel"]), nn.GELU())
        rel = cfg.get("relative_position_bias", False)
        self.layers = nn.ModuleList([
            TransformerSentenceEncoderLayer(
                dim, cfg["ffn_dim"], cfg["heads"], cfg["layer_norm_first"],
                has_relative_attention_bias=rel and i == 0, num_buckets=cfg.get("num_buckets", 320),
                max_distance=cfg.get("max_distance", 800), gru_rel_pos=rel and cfg.get("gru_rel_pos", True))
            for i in range(cfg["layers"])])
        self.layer_norm_first = cfg["layer_norm_first"]
        self.layer_norm = nn.LayerNorm(dim)

    def extract_features(self, x):
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = x.transpose(0, 1)
        pos_bias = None
        for layer in self.layers:
            x, pos_bias = layer(x, pos_bias)
        return x.transpose(0, 1)

    def forward(self, x):
        x = self.extract_features(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, []


class Wav2Vec2Model(nn.Module):
    """fairseq's Wav2Vec2Model / WavLM without masking, quantizer or heads."""

    def __init__(self, cfg):
        super().__init__()
        self.feature_extractor = ConvFeatureExtractionModel(
            cfg["conv_layers"], "layer_norm" if cfg["extractor_layer_norm"] else "default", cfg["conv_bias"])
        embed = cfg["conv_layers"][-1][0]
        self.layer_norm = nn.LayerNorm(embed)
        self.post_extract_proj = nn.Linear(embed, cfg["embed_dim"]) if embed != cfg["embed_dim"] else None
        self.encoder = TransformerEncoder(cfg)

    def extract_features(self, source):
        features = self.feature_extractor(source).transpose(1, 2)
        features = self.layer_norm(features)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        x, _ = self.encoder(features)
        return x


class UpstreamExpert(nn.Module):
    """s3prl's wavlm expert: layer-norms each wave when cfg.normalize, and hands out the inputs of
    every encoder layer plus the encoder's output (hooks), as "hidden_states"."""

    def __init__(self, cfg):
        super().__init__()
        self.normalize = cfg.get("normalize", False)
        self.model = Wav2Vec2Model(cfg)

    def forward(self, wavs):
        if self.normalize:
            wavs = [F.layer_norm(w, w.shape) for w in wavs]
        hidden = []
        handles = [layer.register_forward_hook(lambda m, inp, out: hidden.append(inp[0].transpose(0, 1)))
                   for layer in self.model.encoder.layers]
        handles.append(self.model.encoder.register_forward_hook(lambda m, inp, out: hidden.append(out[0])))
        try:
            x = self.model.extract_features(torch.stack(wavs))
        finally:
            for h in handles:
                h.remove()
        return {"default": x, "hidden_states": hidden}


# --- UniSpeech's ECAPA-TDNN -----------------------------------------------------------------

class Res2Conv1dReluBn(nn.Module):
    def __init__(self, channels, kernel_size, stride, padding, dilation, scale):
        super().__init__()
        self.width = channels // scale
        self.nums = scale if scale == 1 else scale - 1
        self.scale = scale
        self.convs = nn.ModuleList([nn.Conv1d(self.width, self.width, kernel_size, stride, padding, dilation)
                                    for _ in range(self.nums)])
        self.bns = nn.ModuleList([nn.BatchNorm1d(self.width) for _ in range(self.nums)])

    def forward(self, x):
        out = []
        spx = torch.split(x, self.width, 1)
        sp = None
        for i in range(self.nums):
            sp = spx[i] if i == 0 else sp + spx[i]
            sp = self.bns[i](F.relu(self.convs[i](sp)))
            out.append(sp)
        if self.scale != 1:
            out.append(spx[self.nums])
        return torch.cat(out, dim=1)


class Conv1dReluBn(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, dilation=1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))


class SE_Connect(nn.Module):
    def __init__(self, channels, se_bottleneck_dim):
        super().__init__()
        self.linear1 = nn.Linear(channels, se_bottleneck_dim)
        self.linear2 = nn.Linear(se_bottleneck_dim, channels)

    def forward(self, x):
        out = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * out.unsqueeze(2)


class SE_Res2Block(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, scale,
                 se_bottleneck_dim):
        super().__init__()
        self.Conv1dReluBn1 = Conv1dReluBn(in_channels, out_channels)
        self.Res2Conv1dReluBn = Res2Conv1dReluBn(out_channels, kernel_size, stride, padding, dilation, scale)
        self.Conv1dReluBn2 = Conv1dReluBn(out_channels, out_channels)
        self.SE_Connect = SE_Connect(out_channels, se_bottleneck_dim)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x):
        residual = self.shortcut(x) if self.shortcut is not None else x
        x = self.SE_Connect(self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x))))
        return x + residual


class AttentiveStatsPool(nn.Module):
    def __init__(self, in_dim, attention_channels, global_context_att=False):
        super().__init__()
        self.global_context_att = global_context_att
        self.linear1 = nn.Conv1d(in_dim * 3 if global_context_att else in_dim, attention_channels, 1)
        self.linear2 = nn.Conv1d(attention_channels, in_dim, 1)

    def forward(self, x):
        if self.global_context_att:
            mean = torch.mean(x, dim=-1, keepdim=True).expand_as(x)
            std = torch.sqrt(torch.var(x, dim=-1, keepdim=True) + 1e-10).expand_as(x)
            x_in = torch.cat((x, mean, std), dim=1)
        else:
            x_in = x
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x_in))), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        residuals = torch.sum(alpha * (x ** 2), dim=2) - mean ** 2
        std = torch.sqrt(residuals.clamp(min=1e-9))
        return torch.cat([mean, std], dim=1)


class ECAPA_TDNN(nn.Module):
    """ECAPA_TDNN_SMALL on s3prl hidden states: channels 512, 1536 pooled, emb_dim 256 at full size."""

    def __init__(self, encoder_cfg, channels=512, emb_dim=256, cat_out=1536, attention_channels=128,
                 se_bottleneck_dim=128, scale=8, global_context_att=False):
        super().__init__()
        self.feature_extract = UpstreamExpert(encoder_cfg)
        feat_dim = encoder_cfg["embed_dim"]
        self.feature_weight = nn.Parameter(torch.zeros(encoder_cfg["layers"] + 1))
        self.instance_norm = nn.InstanceNorm1d(feat_dim)
        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel_size=5, padding=2)
        self.layer2 = SE_Res2Block(channels, channels, 3, 1, 2, 2, scale, se_bottleneck_dim)
        self.layer3 = SE_Res2Block(channels, channels, 3, 1, 3, 3, scale, se_bottleneck_dim)
        self.layer4 = SE_Res2Block(channels, channels, 3, 1, 4, 4, scale, se_bottleneck_dim)
        self.conv = nn.Conv1d(channels * 3, cat_out, kernel_size=1)
        self.pooling = AttentiveStatsPool(cat_out, attention_channels, global_context_att)
        self.bn = nn.BatchNorm1d(cat_out * 2)
        self.linear = nn.Linear(cat_out * 2, emb_dim)

    def get_feat(self, x):
        with torch.no_grad():
            x = self.feature_extract([sample for sample in x])
        x = torch.stack(x["hidden_states"], dim=0)
        norm_weights = F.softmax(self.feature_weight, dim=-1).unsqueeze(-1).unsqueeze(-1).unsqueeze(-1)
        x = (norm_weights * x).sum(dim=0)
        x = torch.transpose(x, 1, 2) + 1e-6
        return self.instance_norm(x)

    def forward(self, x):  # (B, N) at 16 kHz -> (B, emb_dim)
        x = self.get_feat(x)
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        out = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))
        return self.linear(self.bn(self.pooling(out)))
