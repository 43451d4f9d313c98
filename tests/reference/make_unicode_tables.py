#!/usr/bin/python3
"""The Unicode tables of src/data/unicode.cpp, from this Python's unicodedata: general category,
canonical combining class, the one-level decomposition mappings (canonical and compatibility,
with the canonical pairs NFC composes back marked), the simple lowercase mapping and the
cased / case-ignorable flags str.lower() uses for the final sigma.

Usage:
    /usr/bin/python3 tests/reference/make_unicode_tables.py src/data/unicode.cpp
rewrites the block between "// BEGIN GENERATED UNICODE TABLES" and "// END GENERATED UNICODE
TABLES" of that file. Each table is one string of hex numbers ('-' marks a negative); a row's
first number is its distance from the previous row's first (the first row's from 0).
    /usr/bin/python3 tests/reference/make_unicode_tables.py --fixture tests/fixtures/unicode_expected.json
writes what unicodedata says of a sample of code points and strings (tests/data/test_unicode.cpp).
"""
import argparse
import json
import random
import sys
import unicodedata

# The order of unicode::Category in src/data/unicode.h.
CATEGORIES = ["Cn", "Cc", "Cf", "Co", "Cs", "Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me", "Mn", "Nd", "Nl", "No",
              "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Sc", "Sk", "Sm", "So", "Zl", "Zp", "Zs"]
HANGUL = range(0xAC00, 0xD7A4)  # decomposed and composed by formula


def runs(value):
    """[lo, hi, v] for the maximal runs of code points with the same non-None value(cp)."""
    out = []
    for cp in range(0x110000):
        v = value(cp)
        if v is None:
            continue
        if out and out[-1][1] + 1 == cp and out[-1][2] == v:
            out[-1][1] = cp
        else:
            out.append([cp, cp, v])
    return out


def categories():
    rows = runs(lambda cp: CATEGORIES.index(unicodedata.category(chr(cp))) or None)
    # decimal_value() reads a digit as its distance from its Nd run's start, modulo 10.
    for lo, hi, k in rows:
        if CATEGORIES[k] == "Nd":
            assert all(unicodedata.decimal(chr(cp)) == (cp - lo) % 10 for cp in range(lo, hi + 1)), hex(lo)
    return [(lo, hi - lo, k) for lo, hi, k in rows]


def decompositions():
    """cp, more, kind, count, mapping: cp + i (i <= more) maps to mapping + i (more > 0 only for
    one-code-point mappings); kind 0 canonical, 1 canonical and NFC composes it back, 2 compatibility."""
    rows = []
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if not d or cp in HANGUL:
            continue
        compat = d.startswith("<")
        mapping = [int(x, 16) for x in d.split() if not x.startswith("<")]
        composes = not compat and len(mapping) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp)
        if composes:
            assert unicodedata.combining(chr(mapping[0])) == 0, hex(cp)  # composition starts at a starter
        kind = 2 if compat else int(composes)
        last = rows[-1] if rows else None
        if (last and len(mapping) == 1 and last[3] == 1 and last[2] == kind and last[0] + last[1] + 1 == cp and
                last[4] + last[1] + 1 == mapping[0]):
            last[1] += 1
        else:
            rows.append([cp, 0, kind, len(mapping)] + mapping)
    return rows


def combining_classes():
    return [(lo, hi - lo, k) for lo, hi, k in runs(lambda cp: unicodedata.combining(chr(cp)) or None)]


def lowercase():
    """lo, hi - lo, delta, stride: cp in [lo, hi] (every stride-th from lo; stride 0: lo alone)
    lowers to cp + delta."""
    rows = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) != 1:
            assert cp == 0x130, hex(cp)  # U+0130's two-code-point lowercase: by hand
            continue
        delta = ord(low) - cp
        if rows and rows[-1][2] == delta and cp - rows[-1][1] in (1, 2) and rows[-1][3] in (0, cp - rows[-1][1]):
            rows[-1][3] = cp - rows[-1][1]
            rows[-1][1] = cp
        else:
            rows.append([cp, cp, delta, 0])
    return [(lo, hi - lo, delta, stride) for lo, hi, delta, stride in rows]


def casing():
    """lo, hi - lo, 1 cased / 2 case-ignorable, probed through str.lower()'s final sigma itself."""
    def kind(cp):
        if 0xD800 <= cp <= 0xDFFF:
            return None
        c = chr(cp)
        if (c + "\u03a3").lower()[-1] == "\u03c2":
            return 1
        return 2 if ("A" + c + "\u03a3").lower()[-1] == "\u03c2" else None
    return [(lo, hi - lo, k) for lo, hi, k in runs(kind)]


def table(name, comment, rows):
    items, last = [], 0
    for row in rows:
        row = list(row)
        row[0], last = row[0] - last, row[0]
        items += [("-%x" % -v) if v < 0 else "%x" % v for v in row]
    lines = ['    "%s "' % " ".join(items[k:k + 24]) for k in range(0, len(items), 24)]
    return ["// " + comment, "constexpr char %s[] =" % name] + lines[:-1] + [lines[-1] + ";"]


def unicode_tables():
    out = ["// Generated by tests/reference/make_unicode_tables.py from Python %s's unicodedata (Unicode %s)."
           % (sys.version.split()[0], unicodedata.unidata_version), "// clang-format off"]
    out += table("kCategories", "lo, hi - lo, Category (Cn, unassigned, left out)", categories())
    out += table("kCombiningClasses", "lo, hi - lo, canonical combining class (0 left out)", combining_classes())
    out += table("kDecompositions", "cp, more, kind (0 canonical, 1 canonical that NFC composes back, "
                 "2 compatibility), count, mapping: cp + i (i <= more) maps to mapping + i", decompositions())
    out += table("kLowercase", "lo, hi - lo, delta, stride (0: lo alone)", lowercase())
    out += table("kCasing", "lo, hi - lo, 1 cased / 2 case-ignorable", casing())
    out.append("// clang-format on")
    return "\n".join(out)


def write_fixture(path):
    """points: [cp, Category, combining class, decimal value or -1] for the first code point of
    every 3rd category run and every 5th code point with a decomposition, a combining class or a
    lowercase; strings: [text, NFD, NFKD, NFC, NFKC, str.lower()] for each of the latter alone
    and for 400 random strings of them (with ASCII letters, Hangul jamo and sigmas)."""
    special = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and (
        unicodedata.decomposition(chr(cp)) or unicodedata.combining(chr(cp)) or chr(cp).lower() != chr(cp))][::5]
    starts = [lo for lo, _, _ in categories()][::3]
    points = []
    for cp in sorted(set(starts + special)):
        c = chr(cp)
        decimal = unicodedata.decimal(c, -1) if unicodedata.category(c) == "Nd" else -1
        points.append([cp, CATEGORIES.index(unicodedata.category(c)), unicodedata.combining(c), decimal])
    rng = random.Random(7)
    pool = [chr(cp) for cp in special] + list("aAeEsS\u03a3\u03c3 .\u1100\u1161\u11a8\uac00") * 40
    texts = [chr(cp) for cp in special] + ["".join(rng.choice(pool) for _ in range(rng.randint(2, 8)))
                                           for _ in range(400)]
    strings = [[t] + [unicodedata.normalize(f, t) for f in ("NFD", "NFKD", "NFC", "NFKC")] + [t.lower()]
               for t in texts]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"unidata_version": unicodedata.unidata_version, "points": points, "strings": strings}, f,
                  ensure_ascii=False, separators=(",", ":"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", help="write this JSON fixture instead")
    parser.add_argument("file", nargs="?", help="src/data/unicode.cpp")
    args = parser.parse_args()
    if args.fixture:
        write_fixture(args.fixture)
        return
    if not args.file:
        parser.error("give src/data/unicode.cpp, or --fixture FILE")
    begin, end = "// BEGIN GENERATED UNICODE TABLES\n", "// END GENERATED UNICODE TABLES\n"
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    i, j = text.index(begin) + len(begin), text.index(end)
    with open(args.file, "w", encoding="utf-8") as f:
        f.write(text[:i] + unicode_tables() + "\n" + text[j:])


if __name__ == "__main__":
    main()
