//! Bad files get clear errors, never a panic, a huge allocation or a read outside the file.

use jielong_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, TensorData, Value, reblock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---- a raw GGUF builder, independent of the crate's writer, for files the writer refuses ----

#[derive(Default)]
struct Raw {
    version: u32,
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    alignment: usize,
}

fn s(b: &mut Vec<u8>, x: &str) {
    b.extend_from_slice(&(x.len() as u64).to_le_bytes());
    b.extend_from_slice(x.as_bytes());
}

impl Raw {
    fn new() -> Raw {
        Raw {
            version: 3,
            alignment: 32,
            ..Raw::default()
        }
    }
    /// A key with a value type and the value's raw bytes.
    fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Raw {
        s(&mut self.kv, key);
        self.kv.extend_from_slice(&ty.to_le_bytes());
        self.kv.extend_from_slice(value);
        self.n_kv += 1;
        self
    }
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        s(&mut self.infos, name);
        self.infos
            .extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend_from_slice(&d.to_le_bytes());
        }
        self.infos.extend_from_slice(&ty.to_le_bytes());
        self.infos.extend_from_slice(&offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }
    fn data(mut self, n: usize) -> Raw {
        self.data = (0..n).map(|i| (i * 7) as u8).collect();
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.n_tensors.to_le_bytes());
        b.extend_from_slice(&self.n_kv.to_le_bytes());
        b.extend_from_slice(&self.kv);
        b.extend_from_slice(&self.infos);
        while !b.len().is_multiple_of(self.alignment) {
            b.push(0);
        }
        b.extend_from_slice(&self.data);
        b
    }
    fn open(&self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes(self.bytes())
    }
}

fn err(r: &Raw) -> GgufError {
    r.open().expect_err("the file should be refused")
}

// ---- specific bad files ------------------------------------------------------------------

#[test]
fn wrong_magic_and_empty_files() {
    let e = GgufFile::from_bytes(b"GGUX\x03\0\0\0".to_vec()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a GGUF file: it starts with \"GGUX\" instead of \"GGUF\""
    );
    // A safetensors file starts with its header length.
    let e = GgufFile::from_bytes(vec![0x48, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap_err();
    assert!(matches!(e, GgufError::NotGguf { .. }), "{e}");
    assert!(matches!(
        GgufFile::from_bytes(vec![]).unwrap_err(),
        GgufError::Empty
    ));
    assert!(matches!(
        GgufFile::from_bytes(b"PK".to_vec()).unwrap_err(),
        GgufError::NotGguf { .. }
    ));
    assert!(matches!(
        GgufFile::from_bytes(b"GG".to_vec()).unwrap_err(),
        GgufError::Truncated { .. }
    ));
    // Opening through the file system names the path when it cannot be read.
    let e = GgufFile::open("/no/such/model.gguf").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read /no/such/model.gguf: "),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.gguf"), b"").unwrap();
    assert!(matches!(
        GgufFile::open(dir.path().join("empty.gguf")).unwrap_err(),
        GgufError::Empty
    ));
    let e = GgufFile::open(dir.path()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("it is a directory, not a GGUF file"),
        "{e}"
    );
}

#[test]
fn versions() {
    let mut r = Raw::new();
    r.version = 1;
    assert!(matches!(err(&r), GgufError::Version1));
    assert!(err(&r).to_string().contains("version 1"));
    r.version = 4;
    assert_eq!(
        err(&r).to_string(),
        "GGUF version 4 is not supported (jielong reads versions 2 and 3)"
    );
    r.version = 0;
    assert!(matches!(err(&r), GgufError::UnsupportedVersion(0)));
    // A big-endian writer stores version 3 as bytes 00 00 00 03.
    r.version = 3u32.swap_bytes();
    let e = err(&r);
    assert!(matches!(e, GgufError::BigEndian { .. }), "{e}");
    assert!(e.to_string().contains("big-endian"));
    r.version = 2;
    assert_eq!(r.open().unwrap().version(), 2);
}

#[test]
fn absurd_counts_and_lengths_are_refused_before_allocating() {
    let mut r = Raw::new();
    r.n_kv = u64::MAX;
    assert!(matches!(err(&r), GgufError::ImplausibleCount { .. }));
    let mut r = Raw::new();
    r.n_tensors = 1 << 40;
    let e = err(&r);
    assert!(
        matches!(e, GgufError::ImplausibleCount { count, .. } if count == 1 << 40),
        "{e}"
    );
    assert!(
        e.to_string().contains("claims 1099511627776 entries"),
        "{e}"
    );

    // An array of 2^60 u64 and one of 2^40 strings, in a tiny file.
    let mut v = 10u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        err(&Raw::new().kv("a", 9, &v)),
        GgufError::ImplausibleCount { .. }
    ));
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        err(&Raw::new().kv("a", 9, &v)),
        GgufError::ImplausibleCount { .. }
    ));
    // An array of u64::MAX arrays: the count times the item size overflows.
    let mut v = 9u32.to_le_bytes().to_vec();
    v.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        err(&Raw::new().kv("a", 9, &v)),
        GgufError::ImplausibleCount { .. }
    ));
    // A string claiming 2^63 bytes.
    let e = err(&Raw::new().kv("a", 8, &(1u64 << 63).to_le_bytes()));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    assert!(
        e.to_string().contains("the value of metadata key \"a\""),
        "{e}"
    );
    // A key claiming u64::MAX bytes.
    let mut r = Raw::new();
    r.kv = u64::MAX.to_le_bytes().to_vec();
    r.kv.extend_from_slice(&[b'k'; 16]);
    r.n_kv = 1;
    let e = err(&r);
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
}

#[test]
fn unknown_value_types_and_deep_nesting() {
    let e = err(&Raw::new().kv("x.y", 13, &[0; 8]));
    assert_eq!(
        e.to_string(),
        "metadata key \"x.y\" has value type 13, which is not a GGUF value type"
    );
    let mut v = 77u32.to_le_bytes().to_vec();
    v.extend_from_slice(&1u64.to_le_bytes());
    assert!(matches!(
        err(&Raw::new().kv("x", 9, &v)),
        GgufError::UnknownValueType { type_id: 77, .. }
    ));
    // 100,000 nested arrays must not overflow the stack.
    let mut v = Vec::new();
    for _ in 0..100_000 {
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
    }
    assert!(matches!(
        err(&Raw::new().kv("deep", 9, &v)),
        GgufError::NestingTooDeep { .. }
    ));
}

#[test]
fn duplicates_and_bad_names() {
    let e = err(&Raw::new()
        .kv("k", 4, &[1, 0, 0, 0])
        .kv("k", 4, &[2, 0, 0, 0]));
    assert_eq!(e.to_string(), "metadata key \"k\" appears twice");
    let e = err(&Raw::new()
        .tensor("w", &[32], 0, 0)
        .tensor("w", &[32], 0, 128)
        .data(256));
    assert_eq!(e.to_string(), "tensor \"w\" appears twice");
    let mut r = Raw::new();
    r.kv = vec![2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 4, 0, 0, 0, 1, 0, 0, 0];
    r.n_kv = 1;
    assert!(matches!(err(&r), GgufError::NotUtf8 { .. }));
    // A string value that is not UTF-8 still opens; asking for it as text is the error.
    let mut v = 2u64.to_le_bytes().to_vec();
    v.extend_from_slice(&[0xc3, 0x28]);
    let f = Raw::new().kv("tok", 8, &v).open().unwrap();
    assert_eq!(
        f.get_str("tok").unwrap_err().to_string(),
        "the string of metadata key \"tok\" is not valid UTF-8"
    );
    assert_eq!(
        f.get_array_bytes("tok").unwrap_err().to_string(),
        "metadata key \"tok\" holds string bytes[195, 40], but an array was expected"
    );
    match f.get("tok").unwrap() {
        Value::String(s) => assert_eq!(s.as_bytes(), [0xc3, 0x28]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn alignment_must_be_a_power_of_two() {
    for bad in [0u32, 3, 48] {
        let e = err(&Raw::new().kv("general.alignment", 4, &bad.to_le_bytes()));
        assert!(matches!(e, GgufError::BadAlignment(_)), "{bad}: {e}");
    }
    let e = err(&Raw::new().kv("general.alignment", 8, &[0; 8]));
    assert!(matches!(e, GgufError::BadAlignment(_)), "{e}");
    let mut r = Raw::new()
        .kv("general.alignment", 4, &64u32.to_le_bytes())
        .tensor("w", &[32], 0, 0)
        .data(128);
    r.alignment = 64;
    let f = r.open().unwrap();
    assert_eq!((f.alignment(), f.data_start() % 64), (64, 0));
}

#[test]
fn bad_tensor_infos() {
    let data = |r: Raw| r.data(4096);
    // Unsupported and unknown ggml types: the file opens, the tensor is refused by name.
    let f = data(
        Raw::new()
            .tensor("blk.0.attn_q.weight", &[256, 2], 10, 0)
            .tensor("odd", &[32], 99, 1024),
    )
    .open()
    .unwrap();
    assert_eq!(
        f.tensor("blk.0.attn_q.weight").unwrap_err().to_string(),
        "tensor \"blk.0.attn_q.weight\" has ggml type 10 (Q2_K), which jielong does not read"
    );
    assert_eq!(
        f.tensor("odd").unwrap_err().to_string(),
        "tensor \"odd\" has ggml type 99 (unknown), which jielong does not read"
    );
    assert_eq!(f.tensors()[0].type_name(), "Q2_K");
    assert_eq!(f.tensors()[0].n_bytes(), Some(2 * 84));
    assert_eq!(
        f.tensor("missing").unwrap_err().to_string(),
        "no tensor named \"missing\" in the file"
    );
    // A known-but-unread type is still bounds-checked.
    assert!(matches!(
        err(&data(Raw::new().tensor("q2", &[256, 100], 10, 0))),
        GgufError::TensorOutOfBounds { .. }
    ));

    let e = err(&data(Raw::new().tensor("w", &[64, 100], 0, 0)));
    assert_eq!(
        e.to_string(),
        "tensor \"w\" needs bytes 0..25600 of the data section, but the data section has 4096 bytes (the file is truncated or the offset is wrong)"
    );
    let e = err(&data(Raw::new().tensor("w", &[32], 0, 4096)));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    let e = err(&data(Raw::new().tensor("w", &[32], 0, 16)));
    assert_eq!(
        e.to_string(),
        "tensor \"w\" has data offset 16, which is not a multiple of the alignment 32"
    );
    let e = err(&data(Raw::new().tensor("w", &[1 << 40, 1 << 40], 0, 0)));
    assert!(matches!(e, GgufError::SizeOverflow { .. }), "{e}");
    let e = err(&data(Raw::new().tensor("w", &[1 << 62], 0, 0)));
    assert!(matches!(e, GgufError::SizeOverflow { .. }), "{e}"); // 2^62 f32 = 2^64 bytes
    let e = err(&data(Raw::new().tensor("w", &[32], 0, u64::MAX - 31)));
    assert!(matches!(e, GgufError::SizeOverflow { .. }), "{e}");
    let e = err(&data(Raw::new().tensor("w", &[33, 2], 8, 0)));
    assert_eq!(
        e.to_string(),
        "tensor \"w\" is Q8_0 with rows of 33 values, which is not a multiple of its block size 32"
    );
    let e = err(&data(Raw::new().tensor("w", &[1, 1, 1, 1, 1], 0, 0)));
    assert!(matches!(e, GgufError::TooManyDims { n_dims: 5, .. }), "{e}");
    // Zero-sized and scalar tensors are fine.
    let f = data(
        Raw::new()
            .tensor("z", &[32, 0], 0, 0)
            .tensor("s", &[], 0, 0),
    )
    .open()
    .unwrap();
    assert!(f.tensor("z").unwrap().dequantize_f32().is_empty());
    assert_eq!(f.tensor("s").unwrap().dequantize_f32().len(), 1);
    // Data section missing altogether.
    let mut r = Raw::new().tensor("w", &[32], 0, 0);
    r.alignment = 1;
    assert!(matches!(
        err(&r),
        GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }
    ));
}

// ---- every truncation and random corruption of a valid file ------------------------------

/// A small valid file: metadata of several kinds and one tensor of each readable type.
fn sample_file() -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut w = GgufWriter::new();
    w.add("general.architecture", "llama")
        .add("llama.block_count", 2u32)
        .add("llama.rope.freq_base", 10000f32)
        .add("tokenizer.ggml.tokens", vec!["<s>", "a", "bc"])
        .add("tokenizer.ggml.scores", vec![0f32, -1.0, -2.0])
        .add(
            "nested",
            Value::Array(jielong_gguf::Array::Array(vec![
                vec![1i32, 2].into(),
                vec![true].into(),
            ])),
        );
    let mut tensors = Vec::new();
    for ty in GgmlType::ALL {
        let dims = vec![ty.block_size().max(32) as u64, 1];
        let n_bytes = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        // Random bytes, with f16 scales made finite by clearing their exponent's top bit.
        let mut raw: Vec<u8> = (0..n_bytes).map(|_| rng.r#gen()).collect();
        for b in raw.iter_mut().skip(1).step_by(2) {
            *b &= 0xbf;
        }
        w.add_tensor(ty.name(), ty, &dims);
        tensors.push((ty.name(), raw));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    let mut out = w.create(&path).unwrap();
    for (name, raw) in &tensors {
        out.write_tensor(name, TensorData::Raw(raw)).unwrap();
    }
    out.finish().unwrap();
    std::fs::read(path).unwrap()
}

/// Everything a loader might do with an opened file; panics (fails the test) on any read
/// outside the file.
fn exercise(f: &GgufFile, len: usize) {
    for (key, _) in f.metadata() {
        let _ = (
            f.get_u32(key),
            f.get_f32(key),
            f.get_str(key),
            f.get_bool(key),
        );
        let _ = (
            f.get_array_str(key),
            f.get_array_f32(key),
            f.get_array_i32(key),
        );
    }
    for info in f.tensors() {
        let Ok(view) = f.view(info) else { continue };
        // Inside the file: the offsets were checked against its length.
        let start = f.data_start() + info.offset();
        assert!(start + view.data().len() as u64 <= len as u64);
        assert_eq!(view.dequantize_f32().len(), view.n_elements());
        if let Ok(r) = reblock(&view) {
            assert_eq!(r.dequantize_f32().unwrap().len(), view.n_elements());
        }
    }
}

#[test]
fn every_truncation_is_an_error_or_a_complete_file() {
    let bytes = sample_file();
    let full = GgufFile::from_bytes(bytes.clone()).unwrap();
    exercise(&full, bytes.len());
    let data_end = full
        .tensors()
        .iter()
        .map(|t| full.data_start() + t.offset() + t.n_bytes().unwrap())
        .max()
        .unwrap() as usize;
    for len in 0..bytes.len() {
        match GgufFile::from_bytes(bytes[..len].to_vec()) {
            Ok(f) => {
                // Only the padding after the last tensor may be cut.
                assert!(len >= data_end, "prefix of {len} bytes opened");
                exercise(&f, len);
            }
            Err(e) => assert!(len < data_end, "prefix of {len} bytes: {e}"),
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let bytes = sample_file();
    let header_len = GgufFile::from_bytes(bytes.clone()).unwrap().data_start() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(20261203);
    let (mut opened, mut refused) = (0, 0);
    for i in 0..4000 {
        let mut b = bytes.clone();
        for _ in 0..rng.gen_range(1..=4) {
            // Mostly in the header, where the structure is.
            let at = if rng.gen_bool(0.85) {
                rng.gen_range(0..header_len)
            } else {
                rng.gen_range(0..b.len())
            };
            b[at] = match rng.gen_range(0..4) {
                0 => b[at] ^ (1 << rng.gen_range(0..8)),
                1 => 0xff,
                2 => 0,
                _ => rng.r#gen(),
            };
        }
        let len = b.len();
        let result = std::panic::catch_unwind(|| match GgufFile::from_bytes(b) {
            Ok(f) => {
                exercise(&f, len);
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        });
        match result {
            Ok(true) => opened += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("corruption {i} panicked"),
        }
    }
    eprintln!("{opened} corrupted files opened, {refused} refused");
    // Both outcomes happen: the corruptions reach the checks and the readers.
    assert!(
        opened > 100 && refused > 100,
        "{opened} opened, {refused} refused"
    );
}
