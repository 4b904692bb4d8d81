//! Writing: round trips through the reader, atomicity, and the writer's own errors.

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use jielong_gguf::{
    Array, GgmlType, GgufError, GgufFile, GgufString, GgufWriter, TensorData, Value, WeightType,
};
use jielong_kernels::quant as kq;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("v.u8", Value::U8(255)),
        ("v.i8", Value::I8(-128)),
        ("v.u16", Value::U16(65535)),
        ("v.i16", Value::I16(-32768)),
        ("v.u32", Value::U32(u32::MAX)),
        ("v.i32", Value::I32(i32::MIN)),
        ("v.f32", Value::F32(-1.5e-42)), // subnormal
        ("v.bool", Value::Bool(true)),
        ("v.string", "接龍 ▁x".into()),
        ("v.empty_string", "".into()),
        ("v.bytes", Value::String(GgufString(vec![0xff, 0x00, 0xc3]))), // not UTF-8
        ("v.u64", Value::U64(u64::MAX)),
        ("v.i64", Value::I64(i64::MIN)),
        ("v.f64", Value::F64(f64::MIN_POSITIVE / 3.0)),
        ("a.u8", vec![1u8, 2, 3].into()),
        ("a.i8", vec![-1i8, 0].into()),
        ("a.u16", vec![7u16].into()),
        ("a.i16", vec![-7i16, 7].into()),
        ("a.u32", vec![0u32, u32::MAX].into()),
        ("a.i32", vec![i32::MIN, 0, i32::MAX].into()),
        ("a.f32", vec![0.1f32, -0.0, f32::INFINITY].into()),
        ("a.bool", vec![true, false].into()),
        ("a.string", vec!["a", "", "🐉"].into()),
        ("a.u64", vec![u64::MAX].into()),
        ("a.i64", vec![i64::MIN, -1].into()),
        ("a.f64", vec![1e300f64].into()),
        ("a.empty", Value::Array(Array::F32(vec![]))),
        ("a.empty_strings", Value::Array(Array::String(vec![]))),
        (
            "a.nested",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::F64(vec![2.5]), Array::Bool(vec![])]),
                Array::Array(vec![]),
            ])),
        ),
    ]
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn metadata_round_trips_exactly() {
    let dir = tmp();
    let path = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    for (k, v) in every_value() {
        w.add(k, v);
    }
    w.create(&path).unwrap().finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    let want = every_value();
    assert_eq!(f.metadata().len(), want.len());
    for ((k, v), (wk, wv)) in f.metadata().iter().zip(&want) {
        assert_eq!(k, wk);
        assert_eq!(v, wv, "{k}");
    }
    assert_eq!(
        f.get_f32("v.f32").unwrap().to_bits(),
        (-1.5e-42f32).to_bits()
    );
    assert_eq!(files_in(dir.path()), ["m.gguf"]);
}

fn special_f32() -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut v: Vec<f32> = (0..4096).map(|_| f32::from_bits(rng.r#gen())).collect();
    v[..8].copy_from_slice(&[
        -0.0,
        0.0,
        1e-45,
        f32::MAX,
        f32::NEG_INFINITY,
        f32::from_bits(0x7fc0_1234), // NaN with a payload
        65520.0,                     // rounds to inf in f16
        5.960_464_5e-8,              // the smallest f16 subnormal
    ]);
    v
}

#[test]
fn floats_round_trip_bit_for_bit() {
    let dir = tmp();
    let path = dir.path().join("f.gguf");
    let x = special_f32();
    // Every f16 and bf16 bit pattern.
    let all_f16: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let all_bf16: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let mut w = GgufWriter::new();
    w.add_tensor("f32", GgmlType::F32, &[64, 64])
        .add_tensor("f32_to_f16", GgmlType::F16, &[4096])
        .add_tensor("f32_to_bf16", GgmlType::BF16, &[4096])
        .add_tensor("f16", GgmlType::F16, &[256, 256])
        .add_tensor("bf16", GgmlType::BF16, &[256, 256])
        .add_tensor("f16_to_f32", GgmlType::F32, &[65536])
        .add_tensor("bf16_to_f32", GgmlType::F32, &[65536]);
    let mut out = w.create(&path).unwrap();
    out.write_tensor("f32", TensorData::F32(&x)).unwrap();
    out.write_tensor("f32_to_f16", TensorData::F32(&x)).unwrap();
    out.write_tensor("f32_to_bf16", TensorData::F32(&x))
        .unwrap();
    out.write_tensor("f16", TensorData::F16(&all_f16)).unwrap();
    out.write_tensor("bf16", TensorData::BF16(&all_bf16))
        .unwrap();
    out.write_tensor("f16_to_f32", TensorData::F16(&all_f16))
        .unwrap();
    out.write_tensor("bf16_to_f32", TensorData::BF16(&all_bf16))
        .unwrap();
    out.finish().unwrap();

    let f = GgufFile::open(&path).unwrap();
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let u16s = |b: &[u8]| {
        b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>()
    };
    let t = f.tensor("f32").unwrap();
    assert_eq!(bits(t.dequantize_f32()), bits(x.clone()));
    // Round to nearest even, as NumPy's astype(float16) and ggml's bf16 conversion.
    let t = f.tensor("f32_to_f16").unwrap();
    let want: Vec<u16> = x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    assert_eq!(u16s(t.data()), want);
    let t = f.tensor("f32_to_bf16").unwrap();
    let want: Vec<u16> = x.iter().map(|&v| kq::f32_to_bf16(v)).collect();
    assert_eq!(u16s(t.data()), want);
    let t = f.tensor("f16").unwrap();
    assert_eq!(u16s(t.data()), (0..=u16::MAX).collect::<Vec<_>>());
    let widened: Vec<f32> = all_f16.iter().map(|h| h.to_f32()).collect();
    assert_eq!(bits(t.dequantize_f32()), bits(widened.clone()));
    assert_eq!(
        bits(f.tensor("f16_to_f32").unwrap().dequantize_f32()),
        bits(widened)
    );
    let t = f.tensor("bf16").unwrap();
    assert_eq!(u16s(t.data()), (0..=u16::MAX).collect::<Vec<_>>());
    let widened: Vec<f32> = all_bf16.iter().map(|h| h.to_f32()).collect();
    assert_eq!(bits(t.dequantize_f32()), bits(widened.clone()));
    assert_eq!(
        bits(f.tensor("bf16_to_f32").unwrap().dequantize_f32()),
        bits(widened)
    );
}

#[test]
fn quantized_tensors_read_back_as_the_kernels_quantizer_made_them() {
    let dir = tmp();
    let path = dir.path().join("q.gguf");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // 300 rows of 256: more values than one streaming chunk.
    let (rows, cols) = (300usize, 256usize);
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| rng.gen_range(-1.0f32..1.0) * (1 + i % 13) as f32)
        .collect();
    let types = [
        (GgmlType::Q8_0, WeightType::Q8_0),
        (GgmlType::Q4_0, WeightType::Q4_0),
        (GgmlType::Q4_1, WeightType::Q4_1),
    ];
    let mut w = GgufWriter::new();
    for (ty, _) in types {
        w.add_tensor(ty.name(), ty, &[cols as u64, rows as u64]);
    }
    let mut out = w.create(&path).unwrap();
    for (ty, _) in types {
        out.write_tensor(ty.name(), TensorData::F32(&x)).unwrap();
    }
    out.finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    for (ty, wt) in types {
        let t = f.tensor(ty.name()).unwrap();
        let q = kq::quantize(wt, &x, cols).unwrap();
        assert_eq!(t.data(), q.as_slice(), "{ty}");
        let want = kq::dequantize(wt, &q, cols).unwrap();
        assert_eq!(t.dequantize_f32(), want, "{ty}");
        // and re-blocking leaves them alone
        let r = jielong_gguf::reblock(&t).unwrap();
        assert!(matches!(r.data, std::borrow::Cow::Borrowed(_)) && r.exact && r.ty == wt);
    }
}

#[test]
fn tensors_written_in_any_order_give_the_same_file() {
    let dir = tmp();
    let a: Vec<f32> = (0..96).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..64).map(|i| -(i as f32)).collect();
    let write = |path: &Path, order: &[&str]| {
        let mut w = GgufWriter::new();
        w.add("k", 1u32)
            .add_tensor("a", GgmlType::F32, &[32, 3])
            .add_tensor("b", GgmlType::Q8_0, &[64]);
        let mut out = w.create(path).unwrap();
        for name in order {
            let data = if *name == "a" { &a } else { &b };
            out.write_tensor(name, TensorData::F32(data)).unwrap();
        }
        out.finish().unwrap();
        std::fs::read(path).unwrap()
    };
    let x = write(&dir.path().join("x.gguf"), &["a", "b"]);
    let y = write(&dir.path().join("y.gguf"), &["b", "a"]);
    assert_eq!(x, y);
    assert_eq!(x.len() % 32, 0, "padded to the alignment like gguf-py");
}

#[test]
fn custom_alignment_and_raw_blocks() {
    let dir = tmp();
    let src = GgufFile::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/kquants.gguf"),
    )
    .unwrap();
    let path = dir.path().join("k.gguf");
    let mut w = GgufWriter::new();
    w.add("general.alignment", 256u32);
    for t in src.tensors() {
        w.add_tensor(t.name(), t.ty().unwrap(), t.dims());
    }
    let mut out = w.create(&path).unwrap();
    for t in src.tensors() {
        out.write_tensor(t.name(), TensorData::Raw(src.view(t).unwrap().data()))
            .unwrap();
    }
    out.finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.data_start() % 256, 0);
    for t in src.tensors() {
        let (a, b) = (src.tensor(t.name()).unwrap(), f.tensor(t.name()).unwrap());
        assert_eq!(b.data(), a.data());
        assert_eq!(b.dims(), a.dims());
        assert_eq!(f.tensor_info(t.name()).unwrap().offset() % 256, 0);
        assert_eq!(b.dequantize_f32(), a.dequantize_f32());
    }
}

#[test]
fn writer_errors_leave_no_file_behind() {
    let dir = tmp();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"the old model").unwrap();

    let plan = || {
        let mut w = GgufWriter::new();
        w.add_tensor("w", GgmlType::Q4_0, &[64, 2]);
        w
    };
    // Unfinished: dropped without finish.
    let mut out = plan().create(&path).unwrap();
    out.write_tensor("w", TensorData::F32(&[0.5; 128])).unwrap();
    drop(out);
    // Never-written tensor.
    let e = plan().create(&path).unwrap().finish().unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot write GGUF: tensor \"w\" was planned but never written"
    );
    // Bad data.
    let mut out = plan().create(&path).unwrap();
    let e = out
        .write_tensor("w", TensorData::F32(&[0.5; 100]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot write GGUF: tensor \"w\" with dims [64, 2] needs 128 values, got 100"
    );
    let e = out
        .write_tensor("w", TensorData::Raw(&[0; 10]))
        .unwrap_err();
    assert!(e.to_string().contains("needs 72 bytes, got 10"), "{e}");
    let e = out
        .write_tensor("v", TensorData::F32(&[0.5; 128]))
        .unwrap_err();
    assert!(e.to_string().contains("\"v\" was not planned"), "{e}");
    let e = out
        .write_tensor("w", TensorData::F16(&[f16::ZERO; 128]))
        .unwrap_err();
    assert!(
        e.to_string().contains("does not write Q4_0 from f16"),
        "{e}"
    );
    out.write_tensor("w", TensorData::F32(&[0.5; 128])).unwrap();
    let e = out
        .write_tensor("w", TensorData::F32(&[0.5; 128]))
        .unwrap_err();
    assert!(e.to_string().contains("written twice"), "{e}");
    drop(out);
    assert_eq!(std::fs::read(&path).unwrap(), b"the old model");
    assert_eq!(files_in(dir.path()), ["model.gguf"]);

    // Plans refused at create.
    let mut w = GgufWriter::new();
    w.add("k", 1u8).add("k", 2u8);
    assert!(matches!(w.create(&path).unwrap_err(), GgufError::DuplicateKey(k) if k == "k"));
    let mut w = GgufWriter::new();
    w.add_tensor("t", GgmlType::F32, &[2])
        .add_tensor("t", GgmlType::F32, &[2]);
    assert!(matches!(
        w.create(&path).unwrap_err(),
        GgufError::DuplicateTensor(_)
    ));
    let mut w = GgufWriter::new();
    w.add_tensor("t", GgmlType::Q8_0, &[48]);
    assert!(matches!(
        w.create(&path).unwrap_err(),
        GgufError::RowNotBlockMultiple { .. }
    ));
    let mut w = GgufWriter::new();
    w.add("general.alignment", 24u32);
    assert!(matches!(
        w.create(&path).unwrap_err(),
        GgufError::BadAlignment(_)
    ));
    let e = GgufWriter::new()
        .create(dir.path().join("no/such/dir/x.gguf"))
        .unwrap_err();
    assert!(e.to_string().starts_with("cannot create "), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"the old model");
    assert_eq!(files_in(dir.path()), ["model.gguf"]);

    // And a finished write replaces the old file.
    let mut out = plan().create(&path).unwrap();
    out.write_tensor("w", TensorData::F32(&[0.5; 128])).unwrap();
    out.finish().unwrap();
    assert_eq!(
        GgufFile::open(&path)
            .unwrap()
            .tensor("w")
            .unwrap()
            .dequantize_f32(),
        [0.5; 128]
    );
    assert_eq!(files_in(dir.path()), ["model.gguf"]);
}
