//! Writing GGUF files (version 3), atomically and one tensor at a time.
//!
//! GGUF puts the whole tensor table, with data offsets, before the data. So a writer first
//! collects the metadata and the *plan* of tensors (name, type, dims), then [`GgufWriter::create`]
//! writes the header to a temporary file beside the target, and [`TensorWriter::write_tensor`]
//! streams each tensor's data (in any order) to its place, converting or quantizing it a chunk at
//! a time. [`TensorWriter::finish`] checks that every tensor was written, syncs and renames the
//! file into place; dropping an unfinished writer deletes the temporary file.
//!
//! ```no_run
//! use jielong_gguf::{GgmlType, GgufWriter, TensorData};
//! let mut w = GgufWriter::new();
//! w.add("general.architecture", "llama");
//! w.add("llama.block_count", 2u32);
//! w.add_tensor("token_embd.weight", GgmlType::Q8_0, &[64, 100]); // 100 rows of 64
//! let mut out = w.create("model.gguf")?;
//! out.write_tensor("token_embd.weight", TensorData::F32(&vec![0.5; 6400]))?;
//! out.finish()?;
//! # Ok::<(), jielong_gguf::GgufError>(())
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::error::{GgufError, Result};
use jielong_kernels::quant::{self as kq, WeightType};

use crate::read::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::types::GgmlType;
use crate::value::{Array, GgufString, Value};

/// The GGUF version this crate writes.
pub const WRITE_VERSION: u32 = 3;

/// Values converted or quantized per step when streaming a tensor (a multiple of every block
/// size), so that writing never holds more than this much beside the caller's data.
const CHUNK_VALUES: usize = 64 * 1024;

/// The data of one tensor, as given to [`TensorWriter::write_tensor`].
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    /// Written as F32, rounded to F16 or BF16 (round to nearest even, as ggml and NumPy do), or
    /// quantized to Q8_0/Q4_0/Q4_1.
    F32(&'a [f32]),
    /// Written as F16 (bit for bit) or widened to F32 (exactly).
    F16(&'a [f16]),
    /// Written as BF16 (bit for bit) or widened to F32 (exactly).
    BF16(&'a [bf16]),
    /// Bytes already in the planned type's ggml layout (e.g. copied from another GGUF file).
    Raw(&'a [u8]),
}

#[derive(Clone, Debug)]
struct Planned {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    offset: u64,
    n_bytes: u64,
}

/// Collects metadata and the tensor plan of a GGUF file.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, GgmlType, Vec<u64>)>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (any value type: `u32`, `f32`, `&str`, `Vec<String>`, [`Array`]...).
    /// Keys are written in the order added; a key added twice is an error at
    /// [`GgufWriter::create`]. `general.alignment` (a u32 power of two) changes the alignment
    /// of tensor data from the default 32.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Plans a tensor of type `ty` with ggml dims (`dims[0]` contiguous: a weight `[out, in]`
    /// is `&[in, out]`). Its data are given later to [`TensorWriter::write_tensor`].
    pub fn add_tensor(&mut self, name: impl Into<String>, ty: GgmlType, dims: &[u64]) -> &mut Self {
        self.tensors.push((name.into(), ty, dims.to_vec()));
        self
    }

    /// Checks the plan, creates a temporary file beside `path` and writes the header into it.
    pub fn create(&self, path: impl AsRef<Path>) -> Result<TensorWriter> {
        let path = path.as_ref().to_path_buf();
        let mut keys = HashSet::new();
        for (k, v) in &self.metadata {
            if !keys.insert(k.as_str()) {
                return Err(GgufError::DuplicateKey(k.clone()));
            }
            check_value(k, v, 0)?;
        }
        let alignment = match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => *a as u64,
            Some((_, v)) => return Err(GgufError::BadAlignment(v.describe())),
        };

        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC);
        header.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k.as_bytes());
            header.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut header, v);
        }

        let mut names = HashSet::new();
        let mut plan = Vec::with_capacity(self.tensors.len());
        let mut offset = 0u64;
        for (name, ty, dims) in &self.tensors {
            if !names.insert(name.as_str()) {
                return Err(GgufError::DuplicateTensor(name.clone()));
            }
            if dims.len() > MAX_DIMS as usize {
                return Err(GgufError::TooManyDims {
                    tensor: name.clone(),
                    n_dims: dims.len() as u32,
                });
            }
            let row = dims.first().copied().unwrap_or(1);
            if !row.is_multiple_of(ty.block_size() as u64) {
                return Err(GgufError::RowNotBlockMultiple {
                    tensor: name.clone(),
                    ty: ty.name(),
                    row,
                    block: ty.block_size() as u64,
                });
            }
            let n_bytes = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .and_then(|n| ty.bytes_for(n))
                .ok_or_else(|| GgufError::SizeOverflow {
                    tensor: name.clone(),
                    dims: dims.clone(),
                })?;
            put_str(&mut header, name.as_bytes());
            header.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            plan.push(Planned {
                name: name.clone(),
                ty: *ty,
                dims: dims.clone(),
                offset,
                n_bytes,
            });
            offset = (offset + n_bytes).next_multiple_of(alignment);
        }
        header.resize(
            (header.len() as u64).next_multiple_of(alignment) as usize,
            0,
        );
        let data_start = header.len() as u64;

        let tmp = temp_path(&path)?;
        let file = File::create(&tmp).map_err(|source| GgufError::Io {
            action: "create",
            path: tmp.clone(),
            source,
        })?;
        let mut w = TensorWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            tmp,
            plan,
            written: vec![false; self.tensors.len()],
            data_start,
            alignment,
            end: data_start + offset,
            pos: 0,
            finished: false,
        };
        w.put(&header)?;
        Ok(w)
    }
}

/// Streams tensor data into a file created by [`GgufWriter::create`].
pub struct TensorWriter {
    out: BufWriter<File>,
    path: PathBuf,
    tmp: PathBuf,
    plan: Vec<Planned>,
    written: Vec<bool>,
    data_start: u64,
    alignment: u64,
    end: u64,
    pos: u64,
    finished: bool,
}

impl std::fmt::Debug for TensorWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorWriter")
            .field("path", &self.path)
            .field("tmp", &self.tmp)
            .field("tensors", &self.plan.len())
            .field("written", &self.written.iter().filter(|w| **w).count())
            .finish()
    }
}

impl TensorWriter {
    /// Writes the data of a planned tensor, converting or quantizing it to the planned type.
    /// Tensors may come in any order; each exactly once.
    pub fn write_tensor(&mut self, name: &str, data: TensorData<'_>) -> Result<()> {
        let i = self
            .plan
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| GgufError::Write(format!("tensor {name:?} was not planned")))?;
        if self.written[i] {
            return Err(GgufError::Write(format!("tensor {name:?} written twice")));
        }
        let p = self.plan[i].clone();
        let n = p.dims.iter().product::<u64>();
        let bad_len = |got: usize, unit: &str| {
            GgufError::Write(format!(
                "tensor {name:?} with dims {:?} needs {} {unit}, got {got}",
                p.dims,
                if unit == "bytes" { p.n_bytes } else { n }
            ))
        };
        match data {
            TensorData::Raw(b) if b.len() as u64 != p.n_bytes => {
                return Err(bad_len(b.len(), "bytes"));
            }
            TensorData::F32(x) if x.len() as u64 != n => return Err(bad_len(x.len(), "values")),
            TensorData::F16(x) if x.len() as u64 != n => return Err(bad_len(x.len(), "values")),
            TensorData::BF16(x) if x.len() as u64 != n => return Err(bad_len(x.len(), "values")),
            _ => {}
        }
        let target = self.data_start + p.offset;
        if self.pos != target {
            self.out
                .seek(SeekFrom::Start(target))
                .map_err(|e| self.io(e))?;
            self.pos = target;
        }
        match (data, p.ty) {
            (TensorData::Raw(b), _) => self.put(b)?,
            (TensorData::F32(x), GgmlType::F32) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|v| v.to_le_bytes()))
            })?,
            (TensorData::F32(x), GgmlType::F16) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()))
            })?,
            (TensorData::F32(x), GgmlType::BF16) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()))
            })?,
            (TensorData::F32(x), GgmlType::Q8_0) => self.put_chunks(x, |c, out| {
                out.resize(c.len() / 32 * GgmlType::Q8_0.type_size(), 0);
                kq::quantize_row(WeightType::Q8_0, c, out);
            })?,
            (TensorData::F32(x), GgmlType::Q4_0) => self.put_chunks(x, |c, out| {
                out.resize(c.len() / 32 * GgmlType::Q4_0.type_size(), 0);
                kq::quantize_row(WeightType::Q4_0, c, out);
            })?,
            (TensorData::F32(x), GgmlType::Q4_1) => self.put_chunks(x, |c, out| {
                out.resize(c.len() / 32 * GgmlType::Q4_1.type_size(), 0);
                kq::quantize_row(WeightType::Q4_1, c, out);
            })?,
            (TensorData::F16(x), GgmlType::F16) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|v| v.to_le_bytes()))
            })?,
            (TensorData::F16(x), GgmlType::F32) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|v| v.to_f32().to_le_bytes()))
            })?,
            (TensorData::BF16(x), GgmlType::BF16) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|v| v.to_le_bytes()))
            })?,
            (TensorData::BF16(x), GgmlType::F32) => self.put_chunks(x, |c, out| {
                out.extend(c.iter().flat_map(|v| v.to_f32().to_le_bytes()))
            })?,
            (d, ty) => {
                let src = match d {
                    TensorData::F32(_) => "f32",
                    TensorData::F16(_) => "f16",
                    TensorData::BF16(_) => "bf16",
                    TensorData::Raw(_) => "raw",
                };
                return Err(GgufError::Write(format!(
                    "tensor {name:?}: jielong does not write {ty} from {src} values (give raw {ty} blocks)"
                )));
            }
        }
        // Zero padding up to the next tensor, as llama.cpp and gguf-py write it.
        let padded = (self.pos - self.data_start).next_multiple_of(self.alignment);
        let pad = self.data_start + padded - self.pos;
        self.put(&vec![0u8; pad as usize])?;
        self.written[i] = true;
        Ok(())
    }

    /// Checks every planned tensor was written, syncs the file and renames it into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(i) = self.written.iter().position(|w| !w) {
            return Err(GgufError::Write(format!(
                "tensor {:?} was planned but never written",
                self.plan[i].name
            )));
        }
        self.out.flush().map_err(|e| self.io(e))?;
        let file = self.out.get_ref();
        // Tensors written out of order leave the file shorter than planned until the last one.
        file.set_len(self.end).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|source| GgufError::Io {
            action: "rename into place",
            path: self.path.clone(),
            source,
        })?;
        self.finished = true;
        Ok(())
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|e| self.io(e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn put_chunks<T>(&mut self, x: &[T], f: impl Fn(&[T], &mut Vec<u8>)) -> Result<()> {
        let mut buf = Vec::new();
        for c in x.chunks(CHUNK_VALUES) {
            buf.clear();
            f(c, &mut buf);
            self.put(&buf)?;
        }
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> GgufError {
        GgufError::Io {
            action: "write",
            path: self.tmp.clone(),
            source,
        }
    }
}

impl Drop for TensorWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| GgufError::Write(format!("{} is not a file path", path.display())))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn check_value(key: &str, v: &Value, depth: usize) -> Result<()> {
    if let Value::Array(a) = v {
        check_array(key, a, depth)?;
    }
    Ok(())
}

fn check_array(key: &str, a: &Array, depth: usize) -> Result<()> {
    if depth >= crate::read::MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            key: key.into(),
            limit: crate::read::MAX_ARRAY_NESTING,
        });
    }
    if let Array::Array(items) = a {
        for inner in items {
            check_array(key, inner, depth + 1)?;
        }
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s.as_bytes()),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.item_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn all<T, const N: usize>(out: &mut Vec<u8>, v: &[T], f: impl Fn(&T) -> [u8; N]) {
        for x in v {
            out.extend_from_slice(&f(x));
        }
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => all(out, v, |x| x.to_le_bytes()),
        Array::U16(v) => all(out, v, |x| x.to_le_bytes()),
        Array::I16(v) => all(out, v, |x| x.to_le_bytes()),
        Array::U32(v) => all(out, v, |x| x.to_le_bytes()),
        Array::I32(v) => all(out, v, |x| x.to_le_bytes()),
        Array::F32(v) => all(out, v, |x| x.to_le_bytes()),
        Array::Bool(v) => all(out, v, |x| [*x as u8]),
        Array::String(v) => v
            .iter()
            .for_each(|s: &GgufString| put_str(out, s.as_bytes())),
        Array::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
        Array::U64(v) => all(out, v, |x| x.to_le_bytes()),
        Array::I64(v) => all(out, v, |x| x.to_le_bytes()),
        Array::F64(v) => all(out, v, |x| x.to_le_bytes()),
    }
}
