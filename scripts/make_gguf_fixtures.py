#!/usr/bin/env python3
"""Regenerates the small GGUF reference files under tests/fixtures/gguf/, and checks jielong's
GGUF writer against llama.cpp's own Python reader.

The fixtures are written and de-quantized by the PyPI package `gguf` (gguf-py, maintained in the
llama.cpp repository): an implementation independent of crates/gguf, whose tests
(crates/gguf/tests/fixtures.rs) read every file here and compare with reference.json and
reference_values.bin. Tests never run Python.

    tensors_<type>.gguf   one per type F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1: tensors "a" (3 rows
                          of 64) and "b" (2x2 rows of 32), quantized by gguf.quants.quantize (F32,
                          F16, BF16 also hold -0.0, subnormals, inf and NaN). Q4_1 and Q5_1 use
                          custom alignment 64 and 16 to cover `general.alignment`.
    kquants.gguf          Q4_K (3 rows of 256), Q5_K (2 rows of 512), Q6_K (2x2 rows of 256): random
                          valid super-blocks (random bytes, f16 scales d and dmin drawn from
                          [1e-3, 1e-1] with random sign for d), which gguf-py cannot produce by
                          quantizing.
    metadata.gguf         one key of every GGUF value type, arrays of each, arrays of strings,
                          arrays of arrays (nested 3 deep, inner arrays of different types), and
                          extreme values; no tensors.
    reference.json        per file: tensors (name, ggml type id and name, ggml dims, where their
                          reference values are in reference_values.bin); the metadata of
                          metadata.gguf as typed JSON; the versions used.
    reference_values.bin  the de-quantized values, f32 little-endian, computed by
                          gguf.quants.dequantize on the tensors as read back by gguf.GGUFReader.

Setup and use (from the repository root):

    python3 -m venv /work/venv-gguf && /work/venv-gguf/bin/pip install gguf==0.19.0
    /work/venv-gguf/bin/python scripts/make_gguf_fixtures.py            # writes the fixtures
    cargo run -p jielong-gguf --example write_sample -- /tmp/sample.gguf
    /work/venv-gguf/bin/python scripts/make_gguf_fixtures.py --check-writer /tmp/sample.gguf

The run is deterministic (one seeded generator). Every check is an assertion.

Writer check (done 2026-12-03 with gguf 0.19.0, numpy 2.4.6): `--check-writer` reads the file
written by the Rust example `write_sample` with gguf.GGUFReader and asserts that every metadata
key has the type and value the example wrote (nested arrays compared flattened, as gguf-py reads
them), that the F32 tensor is bit-identical to the example's values, F16 and BF16 are exactly
NumPy's float16 rounding and gguf-py's BF16 rounding of them, and that the Q8_0, Q4_0 and Q4_1
tensors are byte-identical to gguf.quants.quantize of the same values (ggml's reference
quantizers). It passed; the output it printed is in tests/fixtures/gguf/README.md.
"""

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261203


def dims_of(shape):
    """ggml dims (ne0 first) of a NumPy row-major shape."""
    return list(reversed([int(s) for s in shape]))


def special_values(rng, n):
    v = rng.standard_normal(n).astype(np.float32)
    v[:12] = [-0.0, 0.0, 1e-40, -3e-45, 6e-8, 1e-6, 65504.0, 70000.0, np.inf, -np.inf, np.nan, 3.4e38]
    return v


def quant_values(rng, shape):
    v = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0)).astype(np.float32)
    flat = v.reshape(-1)
    flat[:32] = 0.0  # a block of zeros: the d == 0 path
    flat[32:64] = 0.25  # a constant block
    flat[64] = 40.0  # an outlier
    return v


def write_type_file(path, qtype, rng, alignment=None):
    w = gguf.GGUFWriter(str(path), "jielong-test")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    if qtype in (T.F32, T.F16, T.BF16):
        a = special_values(rng, 3 * 64).reshape(3, 64)
        b = rng.standard_normal((2, 2, 32)).astype(np.float32) * 100
    else:
        a = quant_values(rng, (3, 64))
        b = quant_values(rng, (2, 2, 32))
    for name, x in (("a", a), ("b", b)):
        if qtype == T.F32:
            w.add_tensor(name, x)
        elif qtype == T.F16:
            with np.errstate(over="ignore"):  # 70000 becomes inf in f16, on purpose
                w.add_tensor(name, gguf.quants.quantize(x, T.F16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    finish(w)


def f16_bytes(rng, n, lo, hi, signed):
    d = rng.uniform(lo, hi, n)
    if signed:
        d *= rng.choice([-1.0, 1.0], n)
    return d.astype(np.float16).view(np.uint8).reshape(n, 2)


def random_kquant_blocks(rng, qtype, n_blocks):
    """Random but valid K-quant super-blocks: any bit pattern is a valid quant or scale except
    the f16 scales, which are drawn finite and of realistic size."""
    rb = lambda k: rng.integers(0, 256, (n_blocks, k), dtype=np.uint8)  # noqa: E731
    if qtype == T.Q4_K:
        parts = [f16_bytes(rng, n_blocks, 1e-3, 1e-1, True), f16_bytes(rng, n_blocks, 1e-3, 1e-1, False),
                 rb(12), rb(128)]
    elif qtype == T.Q5_K:
        parts = [f16_bytes(rng, n_blocks, 1e-3, 1e-1, True), f16_bytes(rng, n_blocks, 1e-3, 1e-1, False),
                 rb(12), rb(32), rb(128)]
    elif qtype == T.Q6_K:
        parts = [rb(128), rb(64), rb(16), f16_bytes(rng, n_blocks, 1e-3, 1e-1, True)]
    blocks = np.concatenate(parts, axis=1)
    assert blocks.shape[1] == gguf.GGML_QUANT_SIZES[qtype][1]
    return blocks


def write_kquant_file(path, rng):
    w = gguf.GGUFWriter(str(path), "jielong-test")
    for name, qtype, shape in (("q4_k", T.Q4_K, (3, 256)), ("q5_k", T.Q5_K, (2, 512)),
                               ("q6_k", T.Q6_K, (2, 2, 256))):
        n_blocks = int(np.prod(shape)) // 256
        blocks = random_kquant_blocks(rng, qtype, n_blocks)
        byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, qtype)
        w.add_tensor(name, blocks.reshape(byte_shape), raw_dtype=qtype)
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# (key, GGUF type, sub type for arrays, value). Nested arrays get their inner types from
# gguf-py's inference (int -> i32, float -> f32, str -> string, list -> array).
METADATA = [
    ("test.u8", V.UINT8, None, 255),
    ("test.i8", V.INT8, None, -128),
    ("test.u16", V.UINT16, None, 65535),
    ("test.i16", V.INT16, None, -32768),
    ("test.u32", V.UINT32, None, 4294967295),
    ("test.i32", V.INT32, None, -2147483648),
    ("test.f32", V.FLOAT32, None, 3.14159),
    ("test.bool_true", V.BOOL, None, True),
    ("test.bool_false", V.BOOL, None, False),
    ("test.string", V.STRING, None, "héllo, 世界 🐉"),
    ("test.empty_string", V.STRING, None, ""),
    ("test.u64", V.UINT64, None, 18446744073709551615),
    ("test.i64", V.INT64, None, -9223372036854775808),
    ("test.f64", V.FLOAT64, None, 2.718281828459045),
    ("test.small_u64", V.UINT64, None, 7),
    ("test.small_i32", V.INT32, None, 7),
    ("test.negative_i32", V.INT32, None, -1),
    ("arr.u8", V.ARRAY, V.UINT8, [0, 1, 255]),
    ("arr.i8", V.ARRAY, V.INT8, [-128, 0, 127]),
    ("arr.u16", V.ARRAY, V.UINT16, [0, 65535]),
    ("arr.i16", V.ARRAY, V.INT16, [-32768, 32767]),
    ("arr.u32", V.ARRAY, V.UINT32, [0, 4294967295, 5]),
    ("arr.i32", V.ARRAY, V.INT32, [-2147483648, 2147483647, 0, -1]),
    ("arr.f32", V.ARRAY, V.FLOAT32, [0.1, -2.5, 1e-30, 3.0e38]),
    ("arr.bool", V.ARRAY, V.BOOL, [True, False, True]),
    ("arr.string", V.ARRAY, V.STRING, ["a", "", "ünïcödé", "🐉 dragon", "<0x0A>", "▁the"]),
    ("arr.u64", V.ARRAY, V.UINT64, [0, 18446744073709551615]),
    ("arr.i64", V.ARRAY, V.INT64, [-9223372036854775808, 9223372036854775807]),
    ("arr.f64", V.ARRAY, V.FLOAT64, [0.1, -1e300]),
    ("arr.nested_i32", V.ARRAY, V.ARRAY, [[1, 2, 3], [4], [5, 6]]),
    ("arr.nested_str", V.ARRAY, V.ARRAY, [["a", "b"], ["c"]]),
    ("arr.nested_mixed", V.ARRAY, V.ARRAY, [[1, 2], ["x", "y"], [1.5], [True]]),
    ("arr.nested_deep", V.ARRAY, V.ARRAY, [[[1, 2], [3]], [[4]]]),
    ("tokenizer.ggml.tokens", V.ARRAY, V.STRING, ["<unk>", "<s>", "</s>", "▁hello", "world"]),
    ("tokenizer.ggml.scores", V.ARRAY, V.FLOAT32, [0.0, 0.0, 0.0, -1.5, -2.25]),
    ("tokenizer.ggml.token_type", V.ARRAY, V.INT32, [2, 3, 3, 1, 1]),
]

SCALAR_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32",
                V.INT32: "i32", V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string",
                V.ARRAY: "array", V.UINT64: "u64", V.INT64: "i64", V.FLOAT64: "f64"}


def infer(v):
    return gguf.GGUFValueType.get_type(v)


def json_scalar(t, v):
    if t == V.FLOAT32:
        return float(np.float32(v))  # the exact value stored
    return v


def json_array(item_type, items):
    if item_type == V.ARRAY:
        return {"items": "array", "value": [json_array(infer(x[0]), x) for x in items]}
    return {"items": SCALAR_NAMES[item_type], "value": [json_scalar(item_type, x) for x in items]}


def write_metadata_file(path):
    w = gguf.GGUFWriter(str(path), "jielong-test")
    for key, t, sub, value in METADATA:
        w.add_key_value(key, value, t, sub_type=sub)
    finish(w)
    expected = [{"key": "general.architecture", "type": "string", "value": "jielong-test"}]
    for key, t, sub, value in METADATA:
        if t == V.ARRAY:
            expected.append({"key": key, "type": "array", **json_array(sub, value)})
        else:
            expected.append({"key": key, "type": SCALAR_NAMES[t], "value": json_scalar(t, value)})
    return expected


def check_metadata_readback(path, expected):
    r = gguf.GGUFReader(str(path))
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    assert keys == [e["key"] for e in expected], keys
    for e in expected:
        f = r.fields[e["key"]]
        assert SCALAR_NAMES[f.types[0]] == e["type"], (e["key"], f.types)
        got = f.contents()
        if e["type"] == "array":
            # gguf-py flattens nested arrays, and when their first leaf type is not string it
            # returns the bytes of strings as integers.
            as_bytes = f.types[-1] != V.STRING
            want = [b for x in flatten_json(e)
                    for b in (list(x.encode()) if as_bytes and isinstance(x, str) else [x])]
        else:
            want = e["value"]
        assert got == want, (e["key"], got, want)


def flatten_json(e):
    if e["items"] == "array":
        return [z for inner in e["value"] for z in flatten_json(inner)]
    return list(e["value"])


def reference_tensors(path, values_out):
    """Reads a fixture back with gguf-py and appends its de-quantized tensors to values_out."""
    r = gguf.GGUFReader(str(path))
    out = []
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        assert deq.size == t.n_elements
        offset = sum(v.size for v in values_out)
        values_out.append(deq)
        out.append({
            "name": t.name,
            "type_id": int(t.tensor_type),
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "values_offset": int(offset),
            "count": int(deq.size),
        })
    align = r.fields.get("general.alignment")
    return {"tensors": out, "alignment": int(align.contents()) if align else 32,
            "data_offset": int(r.data_offset)}


def make_fixtures(out):
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    files = {}
    values = []
    alignments = {T.Q4_1: 64, T.Q5_1: 16}
    for qtype in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        name = f"tensors_{qtype.name.lower()}.gguf"
        write_type_file(out / name, qtype, rng, alignments.get(qtype))
        files[name] = reference_tensors(out / name, values)
    write_kquant_file(out / "kquants.gguf", rng)
    files["kquants.gguf"] = reference_tensors(out / "kquants.gguf", values)
    metadata = write_metadata_file(out / "metadata.gguf")
    check_metadata_readback(out / "metadata.gguf", metadata)
    files["metadata.gguf"] = reference_tensors(out / "metadata.gguf", values)

    all_values = np.concatenate(values).astype("<f4")
    (out / "reference_values.bin").write_bytes(all_values.tobytes())
    reference = {
        "made_by": "scripts/make_gguf_fixtures.py",
        "versions": {"gguf": gguf_version(), "numpy": np.__version__,
                     "python": platform.python_version()},
        "seed": SEED,
        "values_file": "reference_values.bin (f32 little-endian)",
        "files": files,
        "metadata": {"metadata.gguf": metadata},
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {len(files)} GGUF files, {all_values.size} reference values, {total} bytes in all")


def gguf_version():
    from importlib.metadata import version
    return version("gguf")


# ---- the writer check ----------------------------------------------------------------------

def sample_values(n, seed):
    """The example's values: an integer hash, scaled by a power of two, so that Rust and NumPy
    compute them exactly alike. Keep in sync with crates/gguf/examples/write_sample.rs."""
    i = np.arange(n, dtype=np.uint64)
    x = (i * np.uint64(2654435761) + np.uint64(seed)) % np.uint64(1 << 32)
    return (((x >> np.uint64(8)).astype(np.float64) - 2.0 ** 23) / 2.0 ** 20).astype(np.float32)


def check_writer(path):
    r = gguf.GGUFReader(str(path))
    assert r.fields["GGUF.version"].contents() == 3
    assert r.alignment == 32
    want = {
        "general.architecture": (V.STRING, "jielong-sample"),
        "sample.u8": (V.UINT8, 200), "sample.i8": (V.INT8, -100),
        "sample.u16": (V.UINT16, 60000), "sample.i16": (V.INT16, -30000),
        "sample.u32": (V.UINT32, 4000000000), "sample.i32": (V.INT32, -2000000000),
        "sample.f32": (V.FLOAT32, float(np.float32(0.1))), "sample.bool": (V.BOOL, True),
        "sample.string": (V.STRING, "jielong 接龍"),
        "sample.u64": (V.UINT64, 2 ** 64 - 1), "sample.i64": (V.INT64, -(2 ** 63)),
        "sample.f64": (V.FLOAT64, 0.1),
        "sample.tokens": (V.ARRAY, ["<s>", "</s>", "▁接", ""]),
        "sample.scores": (V.ARRAY, [float(np.float32(x)) for x in (0.5, -1.25, 3.0)]),
        # [[1, 2, 3] (i32), ["a", "b"]]: gguf-py flattens it and, as the first leaf type is not
        # string, gives the strings' bytes as integers.
        "sample.nested": (V.ARRAY, [1, 2, 3, ord("a"), ord("b")]),
    }
    for key, (t, v) in want.items():
        f = r.fields[key]
        assert f.types[0] == t, (key, f.types)
        assert f.contents() == v, (key, f.contents(), v)
        print(f"  {key}: {[x.name for x in f.types]} = {f.contents()!r}")
    extra = [k for k in r.fields if not k.startswith("GGUF.") and k not in want]
    assert not extra, extra
    tensors = {t.name: t for t in r.tensors}
    plan = {"f32": (T.F32, (2, 64), 1), "f16": (T.F16, (2, 64), 2), "bf16": (T.BF16, (2, 64), 3),
            "q8_0": (T.Q8_0, (3, 64), 4), "q4_0": (T.Q4_0, (3, 64), 5),
            "q4_1": (T.Q4_1, (2, 2, 32), 6)}
    assert set(tensors) == set(plan), set(tensors)
    for name, (qtype, shape, seed) in plan.items():
        t = tensors[name]
        x = sample_values(int(np.prod(shape)), seed).reshape(shape)
        assert t.tensor_type == qtype and tuple(int(d) for d in t.shape) == tuple(reversed(shape))
        if qtype == T.F32:
            same = np.array_equal(t.data.view(np.uint32), x.view(np.uint32))
        elif qtype == T.F16:
            same = np.array_equal(t.data.view(np.uint16), x.astype(np.float16).view(np.uint16))
        else:
            ref = gguf.quants.quantize(x, qtype)
            same = np.array_equal(np.asarray(t.data).reshape(-1), ref.reshape(-1))
        assert same, f"tensor {name} ({qtype.name}) differs from gguf-py's encoding"
        print(f"  tensor {name}: {qtype.name} dims {list(int(d) for d in t.shape)}: identical to gguf-py")
    print(f"writer check passed: {path} read by gguf {gguf_version()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "gguf")
    ap.add_argument("--check-writer", type=Path, metavar="GGUF",
                    help="read a file written by `cargo run -p jielong-gguf --example write_sample`")
    args = ap.parse_args()
    if args.check_writer:
        check_writer(args.check_writer)
    else:
        make_fixtures(args.out)


if __name__ == "__main__":
    sys.exit(main())
