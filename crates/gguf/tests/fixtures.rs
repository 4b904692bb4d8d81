//! Reads the GGUF files written by llama.cpp's own Python package (gguf-py) and compares with the
//! values gguf-py de-quantized (tests/fixtures/gguf, made by scripts/make_gguf_fixtures.py).

use std::path::PathBuf;

use jielong_gguf::{Array, GgmlType, GgufFile, Value, reblock};
use serde_json::Value as Json;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf")
}

fn reference() -> (Json, Vec<f32>) {
    let json: Json =
        serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir().join("reference_values.bin")).unwrap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (json, values)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every tensor of every fixture: type, dims, offsets, and de-quantized values bit for bit.
#[test]
fn tensors_match_gguf_py_dequantize_bit_for_bit() {
    let (json, values) = reference();
    let mut seen_types = std::collections::BTreeSet::new();
    for (file, spec) in json["files"].as_object().unwrap() {
        let f = GgufFile::open(dir().join(file)).unwrap();
        assert_eq!(f.version(), 3, "{file}");
        assert_eq!(f.alignment(), spec["alignment"].as_u64().unwrap(), "{file}");
        let tensors = spec["tensors"].as_array().unwrap();
        assert_eq!(f.tensors().len(), tensors.len(), "{file}");
        if !tensors.is_empty() {
            assert_eq!(
                f.data_start(),
                spec["data_offset"].as_u64().unwrap(),
                "{file}"
            );
        }
        for (info, t) in f.tensors().iter().zip(tensors) {
            let name = t["name"].as_str().unwrap();
            assert_eq!(info.name(), name);
            let view = f.tensor(name).unwrap();
            let id = t["type_id"].as_u64().unwrap() as u32;
            assert_eq!(view.ty().id(), id, "{file}/{name}");
            assert_eq!(view.ty().name(), t["type"].as_str().unwrap());
            let dims: Vec<u64> = t["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            assert_eq!(view.dims(), dims.as_slice(), "{file}/{name}");
            let off = t["values_offset"].as_u64().unwrap() as usize;
            let n = t["count"].as_u64().unwrap() as usize;
            let want = &values[off..off + n];
            let got = view.dequantize_f32();
            // Bit for bit, NaN payloads included: every product in these formats is exact in
            // f32, so ggml, gguf-py and this crate round the same single addition alike.
            assert_eq!(bits(&got), bits(want), "{file}/{name} ({})", view.ty());
            seen_types.insert(view.ty().name());
        }
    }
    let all: std::collections::BTreeSet<_> = GgmlType::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(seen_types, all, "every readable type has a fixture");
}

fn json_to_array(j: &Json) -> Array {
    let items = j["value"].as_array().unwrap();
    let ints = || items.iter().map(|v| v.as_i64().unwrap());
    let uints = || items.iter().map(|v| v.as_u64().unwrap());
    match j["items"].as_str().unwrap() {
        "u8" => Array::U8(uints().map(|v| v as u8).collect()),
        "i8" => Array::I8(ints().map(|v| v as i8).collect()),
        "u16" => Array::U16(uints().map(|v| v as u16).collect()),
        "i16" => Array::I16(ints().map(|v| v as i16).collect()),
        "u32" => Array::U32(uints().map(|v| v as u32).collect()),
        "i32" => Array::I32(ints().map(|v| v as i32).collect()),
        "u64" => Array::U64(uints().collect()),
        "i64" => Array::I64(ints().collect()),
        "f32" => Array::F32(items.iter().map(|v| v.as_f64().unwrap() as f32).collect()),
        "f64" => Array::F64(items.iter().map(|v| v.as_f64().unwrap()).collect()),
        "bool" => Array::Bool(items.iter().map(|v| v.as_bool().unwrap()).collect()),
        "string" => Array::String(items.iter().map(|v| v.as_str().unwrap().into()).collect()),
        "array" => Array::Array(items.iter().map(json_to_array).collect()),
        other => panic!("item type {other}"),
    }
}

fn json_to_value(j: &Json) -> Value {
    let v = &j["value"];
    match j["type"].as_str().unwrap() {
        "u8" => Value::U8(v.as_u64().unwrap() as u8),
        "i8" => Value::I8(v.as_i64().unwrap() as i8),
        "u16" => Value::U16(v.as_u64().unwrap() as u16),
        "i16" => Value::I16(v.as_i64().unwrap() as i16),
        "u32" => Value::U32(v.as_u64().unwrap() as u32),
        "i32" => Value::I32(v.as_i64().unwrap() as i32),
        "u64" => Value::U64(v.as_u64().unwrap()),
        "i64" => Value::I64(v.as_i64().unwrap()),
        // The JSON holds the exact f32 value as a decimal that round-trips through f64.
        "f32" => Value::F32(v.as_f64().unwrap() as f32),
        "f64" => Value::F64(v.as_f64().unwrap()),
        "bool" => Value::Bool(v.as_bool().unwrap()),
        "string" => Value::String(v.as_str().unwrap().into()),
        "array" => Value::Array(json_to_array(j)),
        other => panic!("type {other}"),
    }
}

#[test]
fn metadata_of_every_value_type_matches() {
    let (json, _) = reference();
    let expected = json["metadata"]["metadata.gguf"].as_array().unwrap();
    let f = GgufFile::open(dir().join("metadata.gguf")).unwrap();
    assert!(f.tensors().is_empty());
    let got = f.metadata();
    assert_eq!(got.len(), expected.len());
    for ((key, value), e) in got.iter().zip(expected) {
        assert_eq!(key, e["key"].as_str().unwrap());
        assert_eq!(value, &json_to_value(e), "{key}");
    }

    // Typed access, including the integer widths converters use.
    assert_eq!(f.get_str("general.architecture").unwrap(), "jielong-test");
    assert_eq!(f.get_u32("test.u32").unwrap(), u32::MAX);
    assert_eq!(f.get_u32("test.small_u64").unwrap(), 7); // a u32 written as u64
    assert_eq!(f.get_u32("test.small_i32").unwrap(), 7); // a u32 written as i32
    assert_eq!(f.get_i32("test.i32").unwrap(), i32::MIN);
    assert_eq!(f.get_u64("test.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_i64("test.i64").unwrap(), i64::MIN);
    #[allow(clippy::approx_constant)] // the value the fixture holds, not pi
    let want = 3.14159f32;
    assert_eq!(f.get_f32("test.f32").unwrap(), want);
    assert_eq!(f.get_f64("test.f64").unwrap(), std::f64::consts::E);
    assert!(f.get_bool("test.bool_true").unwrap());
    assert!(!f.get_bool("test.bool_false").unwrap());
    assert_eq!(f.get_str("test.string").unwrap(), "héllo, 世界 🐉");
    assert_eq!(f.get_str("test.empty_string").unwrap(), "");
    assert_eq!(
        f.get_array_str("tokenizer.ggml.tokens").unwrap(),
        ["<unk>", "<s>", "</s>", "▁hello", "world"]
    );
    assert_eq!(
        f.get_array_f32("tokenizer.ggml.scores").unwrap(),
        [0.0, 0.0, 0.0, -1.5, -2.25]
    );
    assert_eq!(
        f.get_array_i32("tokenizer.ggml.token_type").unwrap(),
        [2, 3, 3, 1, 1]
    );
    assert_eq!(f.get_array_i32("arr.u8").unwrap(), [0, 1, 255]);
    assert_eq!(f.get_array_u32("arr.u32").unwrap(), [0, u32::MAX, 5]);
    assert_eq!(f.opt_u32("no.such.key").unwrap(), None);
    assert_eq!(f.opt_u32("test.u16").unwrap(), Some(65535));

    // Errors name the key and both types.
    let msg = |e: jielong_gguf::GgufError| e.to_string();
    assert_eq!(
        msg(f.get_u32("test.string").unwrap_err()),
        "metadata key \"test.string\" holds string \"héllo, 世界 🐉\", but u32 was expected"
    );
    assert_eq!(
        msg(f.get_u32("test.negative_i32").unwrap_err()),
        "metadata key \"test.negative_i32\" holds i32 -1, which does not fit in u32"
    );
    assert_eq!(
        msg(f.get_u32("test.u64").unwrap_err()),
        "metadata key \"test.u64\" holds u64 18446744073709551615, which does not fit in u32"
    );
    assert_eq!(
        msg(f.get_array_str("arr.i32").unwrap_err()),
        "metadata key \"arr.i32\" holds an array of 4 i32, but an array of strings was expected"
    );
    assert_eq!(
        msg(f.get_array_i32("arr.u32").unwrap_err()),
        "metadata key \"arr.u32[1]\" holds 4294967295, which does not fit in i32"
    );
    assert_eq!(
        msg(f.get_str("llama.block_count").unwrap_err()),
        "metadata key \"llama.block_count\" is missing"
    );
    assert!(f.opt_bool("test.u8").is_err());
}

/// Re-blocking turns every type into one the kernels run, exactly where the docs say so and
/// within the documented bound elsewhere.
#[test]
fn reblocked_tensors_keep_the_reference_values() {
    let (json, values) = reference();
    for (file, spec) in json["files"].as_object().unwrap() {
        let f = GgufFile::open(dir().join(file)).unwrap();
        for t in spec["tensors"].as_array().unwrap() {
            let view = f.tensor(t["name"].as_str().unwrap()).unwrap();
            let off = t["values_offset"].as_u64().unwrap() as usize;
            let want = &values[off..off + view.n_elements()];
            let r = reblock(&view).unwrap();
            assert_eq!((r.rows, r.cols), (view.n_rows(), view.row_len()));
            r.mat().unwrap();
            let got = r.dequantize_f32().unwrap();
            assert_eq!(got.len(), want.len());
            let expect_ty = match view.ty() {
                GgmlType::F16 => GgmlType::F32,
                GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K | GgmlType::Q6_K => GgmlType::Q8_0,
                GgmlType::Q4_K => GgmlType::Q4_1,
                same => same,
            };
            assert_eq!(r.ggml_type(), expect_ty, "{}", view.ty());
            if r.exact {
                assert_eq!(bits(&got), bits(want), "{} -> {}", view.ty(), r.ggml_type());
                continue;
            }
            let mut worst = 0f32; // the largest error as a fraction of its bound
            for (b, (g, w)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
                let f16_at = |i: usize| {
                    half::f16::from_le_bytes([r.data[b * 20 + i], r.data[b * 20 + i + 1]]).to_f32()
                };
                let bound = match view.ty() {
                    // Q4_1 block b holds f16(d*sc) and f16(-dmin*m): each is within half an f16
                    // ulp of the exact product, the level multiplies the first by at most 15, and
                    // f32 rounds the result once more.
                    GgmlType::Q4_K => {
                        let (d, m) = (f16_at(0).abs(), f16_at(2).abs());
                        let half_ulp = |x: f32| x * 2f32.powi(-11) * 1.001 + 2f32.powi(-25);
                        15.0 * half_ulp(d) + half_ulp(m) + (15.0 * d + m) * 2f32.powi(-23)
                    }
                    // Q8_0 re-quantization: half a step d = amax/127, plus 127 levels times the
                    // f16 rounding of d (half an ulp).
                    _ => {
                        let amax = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                        let d = amax / 127.0;
                        d * (0.5 + 127.0 * 2f32.powi(-11)) * 1.001 + 127.0 * 2f32.powi(-25)
                    }
                };
                for (x, y) in g.iter().zip(w) {
                    let err = (x - y).abs();
                    assert!(
                        err <= bound,
                        "{} block {b}: {x} vs {y}, bound {bound}",
                        view.ty()
                    );
                    worst = worst.max(err / bound);
                }
            }
            // The conversion is really lossy on these random blocks (so the bound is tested).
            assert!(worst > 0.0, "{}: expected some rounding", view.ty());
            eprintln!(
                "{} -> {}: largest error {:.0}% of the bound",
                view.ty(),
                r.ggml_type(),
                worst * 100.0
            );
        }
    }
}

/// A version-2 file (same layout as version 3 for little-endian files) is read too.
#[test]
fn version_2_files_are_read() {
    let mut bytes = std::fs::read(dir().join("tensors_q5_0.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensor("a").unwrap().ty(), GgmlType::Q5_0);
}
