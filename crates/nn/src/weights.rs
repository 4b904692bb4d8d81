//! Named weights: the [`Checkpoint`] every loader reads, and safetensors files (memory-mapped,
//! f32/f16/bf16, one file or shards).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use std::borrow::Cow;

use anyhow::{Context, Result, bail};
use jielong_gguf::GgmlType;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

/// A stored tensor: its Hugging Face name, its shape in PyTorch order (`[out, in]` for a linear
/// weight), its ggml type (safetensors' f32/f16/bf16 are the same bytes as ggml's) and its
/// bytes, borrowed from the memory-mapped file where it can be.
pub struct RawTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    pub data: Cow<'a, [u8]>,
}

impl RawTensor<'_> {
    /// The values as f32 (de-quantized when stored in blocks).
    pub fn to_f32(&self) -> Vec<f32> {
        jielong_gguf::dequantize(self.ty, &self.data)
    }
}

/// Where a model's tensors come from, by Hugging Face name: a safetensors folder, a GGUF
/// file. Tracks which tensors were taken so that a loader can say which it did not use.
pub trait Checkpoint {
    /// The tensor `name`, checked against `shape` (PyTorch order).
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>>;

    /// Fails, naming them, if the checkpoint holds tensors the model did not take.
    fn finish(&self) -> Result<()>;

    /// The tensor `name` as f32 values.
    fn read(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.tensor(name, shape)?.to_f32())
    }
}

/// The tensors of a safetensors checkpoint, read by name. Tracks which were taken so that a loader can
/// say which tensors the model did not use.
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor name -> index into `files`.
    index: BTreeMap<String, usize>,
    taken: BTreeSet<String>,
}

impl Weights {
    /// Opens `model.safetensors`, or the shards named by `model.safetensors.index.json`, in
    /// `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.exists() {
            Self::open(&[single])
        } else if index.exists() {
            let text = std::fs::read_to_string(&index)
                .with_context(|| format!("cannot read {}", index.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", index.display()))?;
            let map = json["weight_map"]
                .as_object()
                .with_context(|| format!("{} has no weight_map", index.display()))?;
            let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
            Self::open(&shards.iter().map(|s| dir.join(s)).collect::<Vec<_>>())
        } else {
            bail!(
                "{} has no model.safetensors (nor model.safetensors.index.json)",
                dir.display()
            )
        }
    }

    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for path in paths {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            // Safety: the file is only read, and model files are not modified while loaded.
            let mmap = unsafe { Mmap::map(&file) }
                .with_context(|| format!("cannot map {}", path.display()))?;
            let names = SafeTensors::deserialize(&mmap)
                .with_context(|| format!("{} is not a valid safetensors file", path.display()))?
                .names()
                .into_iter()
                .cloned()
                .collect::<Vec<_>>();
            for name in names {
                if index.insert(name.clone(), files.len()).is_some() {
                    bail!("tensor {name} appears in more than one shard");
                }
            }
            files.push((path.clone(), mmap));
        }
        Ok(Self {
            files,
            index,
            taken: BTreeSet::new(),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn tensor_view(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>> {
        let &file = self
            .index
            .get(name)
            .with_context(|| format!("the checkpoint has no tensor {name}"))?;
        let (path, mmap) = &self.files[file];
        let st = SafeTensors::deserialize(mmap)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let view = st
            .tensor(name)
            .with_context(|| format!("cannot read {name} from {}", path.display()))?;
        if view.shape() != shape {
            bail!(
                "tensor {name} has shape {:?}, the model expects {:?}",
                view.shape(),
                shape
            );
        }
        let ty = match view.dtype() {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
            other => {
                bail!("tensor {name} is {other:?}; only f32, f16 and bf16 weights are supported")
            }
        };
        // The view borrows the map, which lives as long as `self`.
        let offset = view.data().as_ptr() as usize - mmap.as_ptr() as usize;
        let data = &mmap[offset..offset + view.data().len()];
        self.taken.insert(name.to_string());
        Ok(RawTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            ty,
            data: Cow::Borrowed(data),
        })
    }

    /// Fails, naming them, if the checkpoint holds tensors the model did not take.
    fn unused_check(&self) -> Result<()> {
        // Rotary tables are recomputed from the config; some exporters save them anyway.
        let unused: Vec<&String> = self
            .index
            .keys()
            .filter(|n| !self.taken.contains(*n) && !n.ends_with("rotary_emb.inv_freq"))
            .collect();
        if !unused.is_empty() {
            let shown: Vec<&str> = unused.iter().take(5).map(|s| s.as_str()).collect();
            bail!(
                "the checkpoint has {} tensor(s) the model does not use: {}{}",
                unused.len(),
                shown.join(", "),
                if unused.len() > 5 { ", ..." } else { "" }
            );
        }
        Ok(())
    }
}

impl Checkpoint for Weights {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>> {
        self.tensor_view(name, shape)
    }

    fn finish(&self) -> Result<()> {
        self.unused_check()
    }
}

/// Writes named f32 tensors to a safetensors file atomically.
pub fn save_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let data = safetensors::serialize(views, &None)?;
    jielong_core::write_atomic(path, &data)
}
