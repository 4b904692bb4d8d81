//! Named weights in safetensors files: memory-mapped, f32/f16/bf16, one file or shards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

/// The tensors of a checkpoint, read by name. Tracks which were taken so that a loader can
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

    /// The tensor `name` as f32 values, checked against `shape`.
    pub fn read(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
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
        let bytes = view.data();
        let values = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                bail!("tensor {name} is {other:?}; only f32, f16 and bf16 weights are supported")
            }
        };
        self.taken.insert(name.to_string());
        Ok(values)
    }

    /// A `[rows, cols]` matrix as stored.
    pub fn matrix(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let values = self.read(name, &[rows, cols])?;
        Ok(Tensor::from_data(
            TensorData::new(values, [rows, cols]),
            device,
        ))
    }

    /// A linear layer's weight, stored `[out, in]` (PyTorch), returned `[in, out]` (burn),
    /// transposed here so the tensor is contiguous.
    pub fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let stored = self.read(name, &[d_out, d_in])?;
        let mut values = vec![0.0f32; stored.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                values[i * d_out + o] = stored[o * d_in + i];
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [d_in, d_out]),
            device,
        ))
    }

    pub fn vector(&mut self, name: &str, len: usize, device: &Device) -> Result<Tensor<1>> {
        let values = self.read(name, &[len])?;
        Ok(Tensor::from_data(TensorData::new(values, [len]), device))
    }

    /// Fails, naming them, if the checkpoint holds tensors the model did not take.
    pub fn finish(&self) -> Result<()> {
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
