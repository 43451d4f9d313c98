#!/usr/bin/python3
"""A tiny WebDataset shard written by Python's tarfile, for tests/data/test_webdataset.cpp.

Usage: /usr/bin/python3 tests/reference/make_wds_fixtures.py OUT_DIR   (the tests read tests/fixtures/)

Writes
OUT_DIR/wds_python.tar   headers made by tarfile.TarInfo.tobuf in the three formats a shard may
    use, one member after another as tarfile.addfile lays them out:
      a pax global header ('g', to be ignored), a folder entry, POSIX ustar members,
      clips/s1.{wav,json,seg.npy} (16 kHz mono PCM-16 WAV, its label, a .npy), a symbolic link,
      GNU-format clips/s2.{FLAC,json} (a FLAC from torchaudio; the upper-case extension lower-cases),
      a 127-byte name as a GNU long name ('L'), a 121-byte name that ustar splits into prefix + name,
      a 150-byte UTF-8 name as a pax 'x' path, webdataset edge cases (a "__...__" metadata
      member, a name without an extension, a basename starting with a dot), a hard link, and
      tarfile's end: two zero blocks and padding to a 10240-byte record.
OUT_DIR/wds_python.json  what the readers must return:
  members  [{name, hex}]  every regular-file member in order (tarfile's own reading of the file)
  samples  [{key, files: {ext: member name}}]  webdataset's tarfile_to_samples grouping (its
           base_plus_ext regex, lower-cased extensions, "__...__" metadata skipped), re-implemented
           here since webdataset is not installed
"""
import io
import json
import os
import re
import sys
import tarfile
import wave

import numpy as np
import torch
import torchaudio

RATE = 16000


def tone(freq, n, amp):
    t = np.arange(n) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(x):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes())
    return buf.getvalue()


def flac_bytes(x, path):
    torchaudio.save(path, torch.from_numpy(x).unsqueeze(0), RATE, format="flac", bits_per_sample=16)
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def base_plus_ext(path):  # webdataset.tariterators.base_plus_ext
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", path)
    return (None, None) if not match else (match.group(1), match.group(2))


def wds_samples(members):  # webdataset's tar_file_iterator + group_by_keys
    samples, current = [], None
    for name, _ in members:
        if "/" not in name and name.startswith("__") and name.endswith("__"):
            continue
        if re.match(r"__[^/]*__($|/)", name):
            continue
        prefix, suffix = base_plus_ext(name)
        if prefix is None:
            continue
        suffix = suffix.lower()
        if current is None or prefix != current["key"]:
            current = {"key": prefix, "files": {}}
            samples.append(current)
        assert suffix not in current["files"]
        current["files"][suffix] = name
    return samples


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tar_path = os.path.join(out_dir, "wds_python.tar")
    long_gnu = "clips/" + "g" * 114 + "/s3.txt"
    long_ustar = "clips/" + "u" * 108 + "/s4.txt"
    long_pax = "clips/" + "p" * 130 + "/\u00fcn\u00efcode-s5.txt"
    assert len(long_gnu) > 100 and len(long_ustar) > 100 and len(long_pax.encode()) > 100
    entries = [  # (format, name, type, data, linkname)
        (tarfile.USTAR_FORMAT, "clips", tarfile.DIRTYPE, b"", ""),
        (tarfile.USTAR_FORMAT, "clips/s1.wav", tarfile.REGTYPE, wav_bytes(tone(440, 1600, 0.5)), ""),
        (tarfile.USTAR_FORMAT, "clips/s1.json", tarfile.REGTYPE, json.dumps({"label": 17}).encode(), ""),
        (tarfile.USTAR_FORMAT, "clips/s1.seg.npy", tarfile.REGTYPE, npy_bytes(np.arange(6, dtype="<f4")), ""),
        (tarfile.USTAR_FORMAT, "clips/link.wav", tarfile.SYMTYPE, b"", "s1.wav"),
        (tarfile.GNU_FORMAT, "clips/s2.FLAC", tarfile.REGTYPE,
         flac_bytes(tone(1000, 2400, 0.25), os.path.join(out_dir, ".tmp.flac")), ""),
        (tarfile.GNU_FORMAT, "clips/s2.json", tarfile.REGTYPE,
         json.dumps({"genre": "jazz", "caption": "caf\u00e9"}, ensure_ascii=False).encode(), ""),
        (tarfile.GNU_FORMAT, long_gnu, tarfile.REGTYPE, b"gnu long name\n", ""),
        (tarfile.USTAR_FORMAT, long_ustar, tarfile.REGTYPE, b"ustar prefix\n", ""),
        (tarfile.PAX_FORMAT, long_pax, tarfile.REGTYPE, b"pax path\n" * 70, ""),
        (tarfile.USTAR_FORMAT, "__shard_info__", tarfile.REGTYPE, b"{}", ""),
        (tarfile.USTAR_FORMAT, "README", tarfile.REGTYPE, b"no extension\n", ""),
        (tarfile.USTAR_FORMAT, "clips/.hidden", tarfile.REGTYPE, b"dot\n", ""),
        (tarfile.USTAR_FORMAT, "odd.dir/.hidden", tarfile.REGTYPE, b"no key\n", ""),
        (tarfile.USTAR_FORMAT, "clips/hard.wav", tarfile.LNKTYPE, b"", "clips/s1.wav"),
    ]
    with open(tar_path, "wb") as f:
        f.write(tarfile.TarInfo.create_pax_global_header({"comment": "losatok webdataset fixture"}))
        for fmt, name, kind, data, link in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data)
            info.linkname = link
            info.mtime = 1700000000
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            f.write(info.tobuf(fmt, "utf-8", "surrogateescape"))
            f.write(data)
            f.write(b"\0" * (-len(data) % 512))
        f.write(b"\0" * 1024)
        f.write(b"\0" * (-f.tell() % tarfile.RECORDSIZE))

    # What tarfile reads back is the expectation (and checks the layout above).
    members = []
    with tarfile.open(tar_path) as t:
        for m in t:
            if m.isreg():
                members.append((m.name, t.extractfile(m).read()))
    expected = [e[1] for e in entries if e[2] == tarfile.REGTYPE]
    assert [m[0] for m in members] == expected, [m[0] for m in members]
    with open(os.path.join(out_dir, "wds_python.json"), "w") as f:
        json.dump({"members": [{"name": n, "hex": d.hex()} for n, d in members],
                   "samples": wds_samples(members)}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{tar_path}: {os.path.getsize(tar_path)} bytes, {len(members)} files")


if __name__ == "__main__":
    main()
