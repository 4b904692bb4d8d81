//! Helpers shared by the integration tests: where the real data lives, and small subsets of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jielong_image::ImageDataset;

/// `../shared/data/images` beside the repository (set `JIELONG_SHARED_DATA` to the `data` folder
/// to look elsewhere).
pub fn images_dir() -> PathBuf {
    let data = std::env::var_os("JIELONG_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = data.join("images");
    assert!(
        dir.is_dir(),
        "the real test data is missing: {} does not exist",
        dir.display()
    );
    dir
}

/// Full MNIST, read once per test binary.
pub fn mnist() -> &'static ImageDataset {
    static MNIST: OnceLock<ImageDataset> = OnceLock::new();
    MNIST.get_or_init(|| {
        jielong_image::open_dataset(&images_dir().join("mnist")).expect("MNIST reads")
    })
}

/// Extracts the first `n` PNG icons of the silk tarball (sorted by name) into `dir`, flat.
pub fn untar_silk(dir: &Path, n: usize) -> Vec<PathBuf> {
    let tarball = images_dir().join("famfamfam_silk_16x16_png.tar.gz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(File::open(tarball).unwrap()));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        if path.extension().is_some_and(|e| e == "png") {
            let out = dir.join(path.file_name().unwrap());
            entry.unpack(&out).unwrap();
            names.push(out);
        }
    }
    names.sort();
    for extra in names.split_off(n.min(names.len())) {
        std::fs::remove_file(extra).unwrap();
    }
    names
}
