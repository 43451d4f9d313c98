#!/usr/bin/python3
"""Fixtures in the key layouts of released checkpoints, at tiny size, made from the committed
vae_tiny.pth (tests/reference/make_fixtures.py) with Debian's python3-torch 1.13:

    /usr/bin/python3 tests/reference/make_release_fixtures.py tests/fixtures

Writes semantic_encoder_tiny.pth: the LoSATok release's `semantic_encoder.pth` layout, the
semantic encoder module's own state_dict (keys `encoder.*` and `bottleneck.*`, no
`semantic_encoder.` prefix), saved with torch.save.
"""
import collections
import os
import sys

import torch


def main(out_dir):
    full = torch.load(os.path.join(out_dir, "vae_tiny.pth"), map_location="cpu")["state_dict"]
    prefix = "semantic_encoder."
    sem = collections.OrderedDict((k[len(prefix):], v) for k, v in full.items() if k.startswith(prefix))
    assert sem and all(k.startswith(("encoder.", "bottleneck.")) for k in sem)
    torch.save(sem, os.path.join(out_dir, "semantic_encoder_tiny.pth"))
    print(f"semantic_encoder_tiny.pth: {len(sem)} tensors")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
