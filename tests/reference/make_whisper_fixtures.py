#!/usr/bin/python3
"""Fixtures of the Whisper port (tests/models/test_whisper.cpp): a tiny random Whisper in both
official layouts and what whisper_ref.py computes from it on real speech.

Usage: make_whisper_fixtures.py OUT_DIR   (the tests read tests/fixtures/)

The speech clip is asterisk-all-circuits-busy-now.wav of the demo corpus
(build/demo-corpus/audio/speech/, 16 kHz mono, 1.8 s): Asterisk's core sound prompts, CC-BY-SA
3.0 (Digium / Allison Smith), stored as int16.

Writes OUT_DIR/whisper_tiny/
  model.pt               torch.save({"dims": {...}, "model_state_dict": {...}}) as openai's
      checkpoints are, float16: n_mels 80, n_audio_ctx 1500 (30 s), audio state 64 (1 head), 1
      encoder layer; n_vocab 400 (the model works at any vocabulary; the real ones are 51864 to
      51866, too big for a fixture), n_text_ctx 64, text state 64 (1 head), 2 decoder layers.
  hf/model.safetensors   the same tensors under Hugging Face's names (float16), without
      model.encoder.embed_positions.weight (sinusoidal, recomputed by the loader; left out to
      keep the fixture small) and with the tied proj_out.weight; hf/config.json.
OUT_DIR/whisper_expected.safetensors
  clip (N,) int16; filters/mel80 (80, 201); filters/mel128_rows (16, 201) rows ::8 of 128;
  mel/head (80, 200), mel/stride (80, 30) = [:, ::100] of the 3000-frame log-mel of the clip
  padded to 30 s; encoder/rows (150, 64) = rows ::10 of the encoder output;
  decoder/logits0 (5, 400) the logits at the initial tokens; options/{initial,suppress,blank};
  {greedy,beam,beam_lp}/{tokens,sum_logprob,avg_logprob}; long/tokens, long_cond/tokens: the
  transcribe loop on the clip at 0 s and 31 s in 35 s of silence, without / with
  condition_on_previous_text.
"""
import json
import os
import sys
import wave

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402
import whisper_ref as ref  # noqa: E402

CLIP = "asterisk-all-circuits-busy-now.wav"
DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1, n_audio_layer=1, n_vocab=400,
            n_text_ctx=64, n_text_state=64, n_text_head=1, n_text_layer=2)
# Special ids of the tiny vocabulary (the real multilingual ones are 50257...).
EOT, SOT, EN, TRANSCRIBE, NOTIMESTAMPS, SOT_PREV, SPACE = 350, 351, 352, 353, 354, 355, 220
INITIAL = [SOT, EN, TRANSCRIBE, NOTIMESTAMPS]
SUPPRESS = [1, 2, 7, 13, SOT, TRANSCRIBE, SOT_PREV]
SEED = 5
EOT_PUSH = 3.0  # the EOT logit's constant offset


def read_clip(root):
    path = os.path.join(root, "build/demo-corpus/audio/speech", CLIP)
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return torch.from_numpy(np.frombuffer(w.readframes(w.getnframes()), np.int16).copy())


def random_model(seed):
    """Random weights shaped so that greedy and beam search make varied, audio-dependent choices:
    the final LayerNorm's gains are signed (else the residual copies the input token into the
    logits), cross-attention is sharpened, and EOT is likely enough to finish some beams."""
    torch.manual_seed(seed)
    m = ref.Whisper(DIMS)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("positional_embedding"):
                p.normal_(0, 1.0)
            elif name.endswith("token_embedding.weight"):
                p.normal_(0, 0.5)
            elif name == "decoder.ln.weight":
                p.normal_(0, 1.0)
            elif "ln" in name.split(".")[-2]:
                p.copy_(1 + 0.1 * torch.randn_like(p)) if name.endswith("weight") else p.zero_()
            elif name.endswith("bias"):
                p.zero_()
        for b in m.decoder.blocks:
            b.cross_attn.query.weight.mul_(4)
            b.cross_attn.key.weight.mul_(4)
            b.cross_attn.out.weight.mul_(2)
        # A constant push towards EOT through the final LayerNorm's bias.
        m.decoder.ln.bias.normal_(0, 0.1)
        m.decoder.token_embedding.weight[EOT] += EOT_PUSH * m.decoder.ln.bias / m.decoder.ln.bias.norm() ** 2
        # Round to float16 as the official files are, so the reference computes with the file's values.
        for t in list(m.parameters()) + [m.encoder.positional_embedding]:
            t.copy_(t.half().float())
    return m.eval()


def result(r):
    tokens, sum_lp, avg_lp = r
    return (torch.tensor(tokens, dtype=torch.int64), torch.tensor([sum_lp], dtype=torch.float64),
            torch.tensor([avg_lp], dtype=torch.float64))


def main():
    out = sys.argv[1]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    os.makedirs(os.path.join(out, "whisper_tiny", "hf"), exist_ok=True)
    model = random_model(SEED)
    sd = {k: v.half() for k, v in model.state_dict().items()}
    torch.save({"dims": DIMS, "model_state_dict": sd}, os.path.join(out, "whisper_tiny", "model.pt"))
    hf = {ref.to_hf_name(k): v for k, v in sd.items() if k != "encoder.positional_embedding"}
    hf["proj_out.weight"] = hf["model.decoder.embed_tokens.weight"].clone()
    st.save(os.path.join(out, "whisper_tiny", "hf", "model.safetensors"), hf, {"format": "pt"})
    config = {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
              "vocab_size": DIMS["n_vocab"], "num_mel_bins": DIMS["n_mels"], "d_model": DIMS["n_audio_state"],
              "encoder_layers": DIMS["n_audio_layer"], "encoder_attention_heads": DIMS["n_audio_head"],
              "decoder_layers": DIMS["n_text_layer"], "decoder_attention_heads": DIMS["n_text_head"],
              "max_source_positions": DIMS["n_audio_ctx"], "max_target_positions": DIMS["n_text_ctx"],
              "encoder_ffn_dim": 4 * DIMS["n_audio_state"], "decoder_ffn_dim": 4 * DIMS["n_text_state"],
              "eos_token_id": EOT, "decoder_start_token_id": SOT, "torch_dtype": "float16"}
    with open(os.path.join(out, "whisper_tiny", "hf", "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    clip16 = read_clip(root)
    clip = clip16.float() / 32768.0
    e = {"clip": clip16, "filters/mel80": ref.mel_filters(80), "filters/mel128_rows": ref.mel_filters(128)[::8]}
    with torch.no_grad():
        mel = ref.log_mel(ref.pad_or_trim(clip, ref.N_SAMPLES), 80)
        assert mel.shape == (80, 3000)
        e["mel/head"] = mel[:, :200].contiguous()
        e["mel/stride"] = mel[:, ::100].contiguous()
        feats = model.encoder(mel[None])
        e["encoder/rows"] = feats[0, ::10].contiguous()
        e["decoder/logits0"] = model.decoder(torch.tensor([INITIAL]), feats)[0].contiguous()
    opt = dict(eot=EOT, suppress_tokens=SUPPRESS, suppress_blank=True, blank_ids=[SPACE, EOT])
    e["options/initial"] = torch.tensor(INITIAL)
    e["options/suppress"] = torch.tensor(SUPPRESS)
    e["options/blank"] = torch.tensor([SPACE, EOT])
    cases = {"greedy": dict(opt, beam_size=0), "beam": dict(opt, beam_size=3),
             "beam_lp": dict(opt, beam_size=3, patience=2.0, length_penalty=0.6)}
    for name, o in cases.items():
        e[name + "/tokens"], e[name + "/sum_logprob"], e[name + "/avg_logprob"] = result(
            ref.decode(model, feats, INITIAL, o))
        print(name, e[name + "/tokens"].tolist(), e[name + "/sum_logprob"].item())
    assert len(e["greedy/tokens"]) >= 8, "the greedy sequence must be >= 8 tokens: pick another SEED"

    long = torch.zeros(35 * 16000)
    long[:len(clip)] = clip
    long[31 * 16000:31 * 16000 + len(clip)] = clip
    e["long/tokens"] = torch.tensor(ref.transcribe(model, long, INITIAL, opt), dtype=torch.int64)
    e["long_cond/tokens"] = torch.tensor(
        ref.transcribe(model, long, INITIAL, opt, condition_on_previous_text=True, sot_prev=SOT_PREV),
        dtype=torch.int64)
    print("long", e["long/tokens"].tolist())
    print("long_cond", e["long_cond/tokens"].tolist())
    st.save(os.path.join(out, "whisper_expected.safetensors"), e)


if __name__ == "__main__":
    main()
