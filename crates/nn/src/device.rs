//! Choosing where tensors live: always explicitly, never `Device::default()` (which prefers a
//! slow software GPU when Mesa is installed).

use anyhow::{Result, bail};
use burn::tensor::Device;

/// `flex` (the pure-Rust CPU backend) or `wgpu` (builds with the `wgpu` feature).
pub fn select_device(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => bail!("this jielong was built without wgpu: rebuild with `--features wgpu`"),
        other => bail!("unknown device {other:?}: use flex or wgpu"),
    }
}
