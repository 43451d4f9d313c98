#!/usr/bin/python3
"""Checks a `.pt` written by `losatok export` from Python: torch.load returns a plain dict of
tensors with the reference names and values, which the PyTorch reference model accepts.

    /usr/bin/python3 tests/reference/check_exported_pt.py EXPORTED.pt REFERENCE.pth
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import losatok_ref as ref  # noqa: E402

RECOMPUTED = (".window", ".fb")


def main():
    exported = torch.load(sys.argv[1])
    assert type(exported) is dict, f"torch.load gave {type(exported).__name__}, not dict"
    reference = torch.load(sys.argv[2])["state_dict"]
    want = {k for k in reference if not k.endswith(RECOMPUTED)}
    assert set(exported) == want, f"names differ: extra {sorted(set(exported) - want)[:5]}, " \
                                  f"missing {sorted(want - set(exported))[:5]}"
    for k in want:
        assert isinstance(exported[k], torch.Tensor), k
        assert exported[k].dtype == reference[k].dtype, k
        assert torch.equal(exported[k], reference[k]), k
    model = ref.AudioVAE(**ref.TINY)
    missing, unexpected = model.load_state_dict(exported, strict=False)
    assert not unexpected, unexpected
    assert all(m.endswith(RECOMPUTED) for m in missing), missing
    print(f"ok: {len(exported)} tensors")


if __name__ == "__main__":
    main()
