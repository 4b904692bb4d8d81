//! Reading GGUF files: header, metadata, tensor infos, and views of tensor data.
//!
//! The file is memory-mapped; parsing copies only the metadata and tensor infos. Every count and
//! length read from the file is checked against the bytes that remain before anything is
//! allocated for it, and every tensor's byte range is checked against the file at open time, so
//! [`GgufFile::tensor`] can hand out plain slices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::quants;
use crate::types::{GgmlType, describe_type, type_layout, type_name};
use crate::value::{Array, GgufString, Value, ValueType};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most this many dimensions.
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (each level would be a recursion).
pub const MAX_ARRAY_NESTING: usize = 16;

/// A tensor's entry in the file's table: name, shape, type and where its data is.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
    n_bytes: Option<u64>,
}

impl TensorInfo {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions in ggml order: `dims()[0]` (ne0) is the contiguous one, so a weight matrix of
    /// PyTorch shape `[out, in]` has dims `[in, out]`.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The shape in row-major order (PyTorch / NumPy order): `dims()` reversed.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// The ggml type id as written in the file.
    pub fn type_id(&self) -> u32 {
        self.type_id
    }

    /// The type, if it is one jielong reads.
    pub fn ty(&self) -> Option<GgmlType> {
        GgmlType::from_id(self.type_id)
    }

    /// ggml's name of the type, or "unknown".
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_id).unwrap_or("unknown")
    }

    /// Offset of the data from the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn n_elements(&self) -> u64 {
        // Checked at open time not to overflow.
        self.dims.iter().product()
    }

    /// Bytes of data, if the type's layout is known.
    pub fn n_bytes(&self) -> Option<u64> {
        self.n_bytes
    }
}

/// A tensor's data in the file, with its shape and type; the data are checked to be exactly as
/// long as shape and type say.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    name: &'a str,
    ty: GgmlType,
    dims: &'a [u64],
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view of `data` as a tensor of this type and ggml shape, checking the row length is a
    /// whole number of blocks and the data length matches.
    pub fn new(name: &'a str, ty: GgmlType, dims: &'a [u64], data: &'a [u8]) -> Result<Self> {
        let n = checked_elements(name, dims)?;
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(ty.block_size() as u64) {
            return Err(GgufError::RowNotBlockMultiple {
                tensor: name.into(),
                ty: ty.name(),
                row,
                block: ty.block_size() as u64,
            });
        }
        let need = ty.bytes_for(n).ok_or_else(|| GgufError::SizeOverflow {
            tensor: name.into(),
            dims: dims.to_vec(),
        })?;
        if need != data.len() as u64 {
            return Err(GgufError::DataLength {
                tensor: name.into(),
                ty: ty.name(),
                dims: dims.to_vec(),
                expected: need,
                got: data.len() as u64,
            });
        }
        Ok(TensorView {
            name,
            ty,
            dims,
            data,
        })
    }

    pub fn name(&self) -> &'a str {
        self.name
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// ggml order: `dims()[0]` is the contiguous dimension (see [`TensorInfo::dims`]).
    pub fn dims(&self) -> &'a [u64] {
        self.dims
    }

    /// The shape in row-major order (PyTorch / NumPy order): `dims()` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The raw bytes, in ggml's layout for the type.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// Values per row (ne0).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows (the product of the other dimensions).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }

    /// The values as f32, row after row (a weight `[out, in]` comes out row-major `[out, in]`).
    pub fn dequantize_f32(&self) -> Vec<f32> {
        quants::dequantize(self.ty, self.data)
    }
}

fn checked_elements(name: &str, dims: &[u64]) -> Result<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| GgufError::SizeOverflow {
            tensor: name.into(),
            dims: dims.to_vec(),
        })
}

enum Backing {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// An open GGUF file: its metadata and tensor table, with the data memory-mapped.
pub struct GgufFile {
    path: Option<PathBuf>,
    bytes: Backing,
    header: Header,
}

struct Header {
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps a GGUF file, parsing and checking its header, metadata and tensor
    /// table. Tensor data are not read until asked for.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other(
                "it is a directory, not a GGUF file",
            )));
        }
        let len = meta.len();
        // Mapping an empty file fails on some systems; an empty file is simply truncated.
        let bytes = if len == 0 {
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only. As with every memory-mapped model loader, another
            // process truncating or rewriting the file while it is open is not defended against;
            // jielong writes model files atomically (a new file, then a rename), which never
            // changes a mapped file.
            Backing::Mmap(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        let header = parse(bytes.bytes())?;
        Ok(GgufFile {
            path: Some(path.to_path_buf()),
            bytes,
            header,
        })
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        let header = parse(&bytes)?;
        Ok(GgufFile {
            path: None,
            bytes: Backing::Owned(bytes),
            header,
        })
    }

    /// The path given to [`GgufFile::open`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.header.data_start
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.header.metadata
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The entry of one tensor.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo> {
        self.header
            .tensor_index
            .get(name)
            .map(|&i| &self.header.tensors[i])
            .ok_or_else(|| GgufError::NoSuchTensor(name.into()))
    }

    /// A view of one tensor's data. Fails for a tensor whose type jielong does not read, naming
    /// the type.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.tensor_info(name)?;
        self.view(info)
    }

    /// A view of the tensor described by `info` (an entry of [`GgufFile::tensors`]).
    pub fn view<'a>(&'a self, info: &'a TensorInfo) -> Result<TensorView<'a>> {
        let ty = info.ty().ok_or_else(|| GgufError::UnsupportedTensorType {
            tensor: info.name.clone(),
            type_desc: describe_type(info.type_id),
        })?;
        // Bounds were checked at open time for every known type; `get` keeps this panic-free
        // even so.
        let start = self.header.data_start + info.offset;
        let end = start + info.n_bytes.unwrap_or(0);
        let data = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.bytes.bytes().get(s..e))
            .ok_or_else(|| GgufError::TensorOutOfBounds {
                tensor: info.name.clone(),
                start: info.offset,
                end: info.offset + info.n_bytes.unwrap_or(0),
                data_len: (self.bytes.bytes().len() as u64).saturating_sub(self.header.data_start),
            })?;
        TensorView::new(&info.name, ty, &info.dims, data)
    }

    // ---- metadata -------------------------------------------------------------------------

    /// The value of a key, if present.
    pub fn opt(&self, key: &str) -> Option<&Value> {
        self.header
            .key_index
            .get(key)
            .map(|&i| &self.header.metadata[i].1)
    }

    /// The value of a key; an error naming the key if it is missing.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.opt(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        int_value(key, self.get(key)?, "u32")
    }
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.opt(key).map(|v| int_value(key, v, "u32")).transpose()
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        int_value(key, self.get(key)?, "u64")
    }
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.opt(key).map(|v| int_value(key, v, "u64")).transpose()
    }
    pub fn get_i32(&self, key: &str) -> Result<i32> {
        int_value(key, self.get(key)?, "i32")
    }
    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>> {
        self.opt(key).map(|v| int_value(key, v, "i32")).transpose()
    }
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        int_value(key, self.get(key)?, "i64")
    }
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        self.opt(key).map(|v| int_value(key, v, "i64")).transpose()
    }

    /// A float; f64 values are rounded to f32 and integer values converted (some converters
    /// write e.g. `rope.freq_base` as an integer).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_f64(key).map(|v| v as f32)
    }
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        Ok(self.opt_f64(key)?.map(|v| v as f32))
    }
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        float_value(key, self.get(key)?)
    }
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.opt(key).map(|v| float_value(key, v)).transpose()
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        bool_value(key, self.get(key)?)
    }
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.opt(key).map(|v| bool_value(key, v)).transpose()
    }

    /// A string (an error if it is not UTF-8).
    pub fn get_str(&self, key: &str) -> Result<&str> {
        str_value(key, self.get(key)?)
    }
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.opt(key).map(|v| str_value(key, v)).transpose()
    }

    /// An array of any item type.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        array_value(key, self.get(key)?)
    }
    pub fn opt_array(&self, key: &str) -> Result<Option<&Array>> {
        self.opt(key).map(|v| array_value(key, v)).transpose()
    }

    /// An array of strings (an error naming the index of an item that is not UTF-8).
    pub fn get_array_str(&self, key: &str) -> Result<Vec<&str>> {
        array_str(key, self.get(key)?)
    }
    pub fn opt_array_str(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.opt(key).map(|v| array_str(key, v)).transpose()
    }

    /// An array of strings as raw bytes (vocabularies may hold pieces that are not UTF-8).
    pub fn get_array_bytes(&self, key: &str) -> Result<Vec<&[u8]>> {
        match array_value(key, self.get(key)?)? {
            Array::String(v) => Ok(v.iter().map(|s| s.as_bytes()).collect()),
            other => Err(wrong_array(key, other, "an array of strings")),
        }
    }

    /// An array of floats (f32 as is, f64 rounded, integers converted).
    pub fn get_array_f32(&self, key: &str) -> Result<Vec<f32>> {
        array_f32(key, self.get(key)?)
    }
    pub fn opt_array_f32(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.opt(key).map(|v| array_f32(key, v)).transpose()
    }

    /// An array of integers of any width whose items all fit in i32.
    pub fn get_array_i32(&self, key: &str) -> Result<Vec<i32>> {
        array_int(key, self.get(key)?, "i32")
    }
    pub fn opt_array_i32(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.opt(key).map(|v| array_int(key, v, "i32")).transpose()
    }

    /// An array of integers of any width whose items all fit in u32.
    pub fn get_array_u32(&self, key: &str) -> Result<Vec<u32>> {
        array_int(key, self.get(key)?, "u32")
    }
    pub fn opt_array_u32(&self, key: &str) -> Result<Option<Vec<u32>>> {
        self.opt(key).map(|v| array_int(key, v, "u32")).transpose()
    }
}

// ---- typed access helpers ------------------------------------------------------------------

fn wrong(key: &str, v: &Value, expected: &'static str) -> GgufError {
    GgufError::WrongType {
        key: key.into(),
        expected,
        found: v.describe(),
    }
}

fn wrong_array(key: &str, a: &Array, expected: &'static str) -> GgufError {
    GgufError::WrongType {
        key: key.into(),
        expected,
        found: format!("an array of {} {}", a.len(), a.item_type().name()),
    }
}

fn int_value<T: TryFrom<i128>>(key: &str, v: &Value, expected: &'static str) -> Result<T> {
    let i = v.as_i128().ok_or_else(|| wrong(key, v, expected))?;
    T::try_from(i).map_err(|_| GgufError::OutOfRange {
        key: key.into(),
        value: v.describe(),
        expected,
    })
}

fn float_value(key: &str, v: &Value) -> Result<f64> {
    match *v {
        Value::F32(x) => Ok(x.into()),
        Value::F64(x) => Ok(x),
        _ => v
            .as_i128()
            .map(|i| i as f64)
            .ok_or_else(|| wrong(key, v, "a float")),
    }
}

fn bool_value(key: &str, v: &Value) -> Result<bool> {
    match *v {
        Value::Bool(b) => Ok(b),
        _ => Err(wrong(key, v, "a bool")),
    }
}

fn str_value<'a>(key: &str, v: &'a Value) -> Result<&'a str> {
    match v {
        Value::String(s) => s
            .as_str()
            .ok_or_else(|| GgufError::ValueNotUtf8(format!("the string of metadata key {key:?}"))),
        _ => Err(wrong(key, v, "a string")),
    }
}

fn array_value<'a>(key: &str, v: &'a Value) -> Result<&'a Array> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(wrong(key, v, "an array")),
    }
}

fn array_str<'a>(key: &str, v: &'a Value) -> Result<Vec<&'a str>> {
    match array_value(key, v)? {
        Array::String(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().ok_or_else(|| {
                    GgufError::ValueNotUtf8(format!("item {i} of metadata key {key:?}"))
                })
            })
            .collect(),
        other => Err(wrong_array(key, other, "an array of strings")),
    }
}

fn array_f32(key: &str, v: &Value) -> Result<Vec<f32>> {
    match array_value(key, v)? {
        Array::F32(x) => Ok(x.clone()),
        Array::F64(x) => Ok(x.iter().map(|&v| v as f32).collect()),
        other => (0..other.len())
            .map(|i| other.int_at(i).map(|v| v as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| wrong_array(key, other, "an array of floats")),
    }
}

fn array_int<T: TryFrom<i128>>(key: &str, v: &Value, expected: &'static str) -> Result<Vec<T>> {
    let a = array_value(key, v)?;
    let what = if expected == "i32" {
        "an array of i32"
    } else {
        "an array of u32"
    };
    (0..a.len())
        .map(|i| {
            let x = a.int_at(i).ok_or_else(|| wrong_array(key, a, what))?;
            T::try_from(x).map_err(|_| GgufError::OutOfRange {
                key: format!("{key}[{i}]"),
                value: x.to_string(),
                expected,
            })
        })
        .collect()
}

// ---- parsing -------------------------------------------------------------------------------

/// A position in the file's bytes; every read is bounds-checked and says what it was reading.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                file_len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 length, then the bytes. The length is checked against the file before
    /// any allocation.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        self.take(len, what)
    }

    fn utf8(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let start = self.pos as u64;
        let bytes = self.string(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::NotUtf8 {
            what: what(),
            offset: start,
        })
    }

    /// Checks that `count` items of at least `min_size` bytes each fit in the rest of the file,
    /// so that a corrupt count cannot make us allocate gigabytes.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<usize> {
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|n| n <= self.remaining());
        if !fits {
            return Err(GgufError::ImplausibleCount {
                what: what(),
                offset: self.pos as u64,
                count,
                remaining: self.remaining(),
            });
        }
        Ok(count as usize)
    }
}

/// Initial capacity for `n` parsed items. The count is known to fit in the file, but an item in
/// memory can be several times its smallest encoding: reserving only a bounded amount up front
/// keeps a corrupt count in a multi-gigabyte file from reserving more memory than the file has.
fn capacity(n: usize) -> usize {
    n.min(1 << 16)
}

fn parse(buf: &[u8]) -> Result<Header> {
    let mut c = Cursor { buf, pos: 0 };
    if buf.is_empty() {
        return Err(GgufError::Empty);
    }
    // A file shorter than the magic is "not GGUF" unless it is the start of "GGUF".
    if buf.len() < 4 && !GGUF_MAGIC.starts_with(buf) {
        return Err(GgufError::NotGguf {
            found: String::from_utf8_lossy(buf).into_owned(),
        });
    }
    let magic: [u8; 4] = c.array(&|| "the magic number".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::NotGguf {
            found: String::from_utf8_lossy(&magic).into_owned(),
        });
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err(GgufError::Version1),
        // A big-endian writer puts a small version number in the high bytes.
        v if v & 0xffff == 0 && v != 0 => return Err(GgufError::BigEndian { raw: v }),
        v => return Err(GgufError::UnsupportedVersion(v)),
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;

    // Smallest encodings: key (8-byte length) + type (4) + a 1-byte value; tensor info: name
    // length (8) + n_dims (4) + type (4) + offset (8).
    let n_kv = c.check_count(n_kv, 8 + 4 + 1, &|| "the metadata count".into())?;
    let mut metadata = Vec::with_capacity(capacity(n_kv));
    let mut key_index = HashMap::with_capacity(capacity(n_kv));
    for i in 0..n_kv {
        let key = c.utf8(&|| format!("the key of metadata entry {i}"))?;
        let type_id = c.u32(&|| format!("the value type of metadata key {key:?}"))?;
        let value = read_value(&mut c, type_id, &key, 0)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey(key));
        }
        metadata.push((key, value));
    }

    let alignment = match key_index.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => {
            let v = &metadata[i].1;
            match v.as_i128() {
                Some(a) if a > 0 && a <= u32::MAX as i128 && (a as u64).is_power_of_two() => {
                    a as u64
                }
                _ => return Err(GgufError::BadAlignment(v.describe())),
            }
        }
    };

    let n_tensors = c.check_count(n_tensors, 8 + 4 + 4 + 8, &|| "the tensor count".into())?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(capacity(n_tensors));
    let mut tensor_index = HashMap::with_capacity(capacity(n_tensors));
    for i in 0..n_tensors {
        let name = c.utf8(&|| format!("the name of tensor {i}"))?;
        let n_dims = c.u32(&|| format!("the dimension count of tensor {name:?}"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
        }
        let type_id = c.u32(&|| format!("the type of tensor {name:?}"))?;
        let offset = c.u64(&|| format!("the data offset of tensor {name:?}"))?;
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor(name));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            type_id,
            offset,
            n_bytes: None,
        });
    }

    // The data section starts at the next multiple of the alignment. A file without tensors
    // may end right after its header.
    let data_start = if tensors.is_empty() {
        c.pos as u64
    } else {
        let start = (c.pos as u64).next_multiple_of(alignment);
        if start > buf.len() as u64 {
            return Err(GgufError::Truncated {
                what: "the padding before the data section".into(),
                offset: c.pos as u64,
                needed: start - c.pos as u64,
                file_len: buf.len() as u64,
            });
        }
        start
    };
    let data_len = buf.len() as u64 - data_start;

    for t in &mut tensors {
        let n = checked_elements(&t.name, &t.dims)?;
        if !t.offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        // Types whose layout is unknown cannot be bounds-checked; `view` refuses them.
        let Some((block, size)) = type_layout(t.type_id) else {
            continue;
        };
        let row = t.dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(block) {
            return Err(GgufError::RowNotBlockMultiple {
                tensor: t.name.clone(),
                ty: type_name(t.type_id).unwrap_or("?"),
                row,
                block,
            });
        }
        let overflow = || GgufError::SizeOverflow {
            tensor: t.name.clone(),
            dims: t.dims.clone(),
        };
        let n_bytes = (n / block).checked_mul(size).ok_or_else(overflow)?;
        let end = t.offset.checked_add(n_bytes).ok_or_else(overflow)?;
        if end > data_len {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                start: t.offset,
                end,
                data_len,
            });
        }
        t.n_bytes = Some(n_bytes);
    }

    Ok(Header {
        version,
        alignment,
        data_start,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

fn read_value(c: &mut Cursor<'_>, type_id: u32, key: &str, depth: usize) -> Result<Value> {
    let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.into(),
        type_id,
    })?;
    let what = || format!("the value of metadata key {key:?}");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(&what)?[0]),
        ValueType::I8 => Value::I8(c.array::<1>(&what)?[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        // ggml reads a bool as one byte and treats any non-zero byte as true.
        ValueType::Bool => Value::Bool(c.array::<1>(&what)?[0] != 0),
        ValueType::String => Value::String(GgufString(c.string(&what)?.to_vec())),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        ValueType::Array => Value::Array(read_array(c, key, depth)?),
    })
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array> {
    if depth >= MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            key: key.into(),
            limit: MAX_ARRAY_NESTING,
        });
    }
    let what = || format!("an array item of metadata key {key:?}");
    let type_id = c.u32(&|| format!("the item type of an array in metadata key {key:?}"))?;
    let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.into(),
        type_id,
    })?;
    let count = c.u64(&|| format!("the length of an array in metadata key {key:?}"))?;
    let n = c.check_count(count, ty.min_encoded_size(), &|| {
        format!("an array of {} in metadata key {key:?}", ty.name())
    })?;

    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            const W: usize = std::mem::size_of::<$t>();
            let bytes = c.take((n * W) as u64, &what)?;
            Array::$variant(
                bytes
                    .chunks_exact(W)
                    .map(|b| <$t>::from_le_bytes(b.try_into().unwrap_or([0; W])))
                    .collect(),
            )
        }};
    }
    Ok(match ty {
        ValueType::U8 => Array::U8(c.take(n as u64, &what)?.to_vec()),
        ValueType::I8 => Array::I8(c.take(n as u64, &what)?.iter().map(|&b| b as i8).collect()),
        ValueType::Bool => Array::Bool(c.take(n as u64, &what)?.iter().map(|&b| b != 0).collect()),
        ValueType::U16 => fixed!(U16, u16),
        ValueType::I16 => fixed!(I16, i16),
        ValueType::U32 => fixed!(U32, u32),
        ValueType::I32 => fixed!(I32, i32),
        ValueType::F32 => fixed!(F32, f32),
        ValueType::U64 => fixed!(U64, u64),
        ValueType::I64 => fixed!(I64, i64),
        ValueType::F64 => fixed!(F64, f64),
        ValueType::String => {
            let mut v = Vec::with_capacity(capacity(n));
            for _ in 0..n {
                v.push(GgufString(c.string(&what)?.to_vec()));
            }
            Array::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(capacity(n));
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}
