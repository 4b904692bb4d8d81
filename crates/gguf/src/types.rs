//! ggml tensor types: ids, names and block layouts.
//!
//! ggml stores a tensor as a sequence of *blocks*: a block holds `block_size` consecutive values
//! of one row in `type_size` bytes (for F32 a block is one value in 4 bytes; for Q4_K it is 256
//! values in 144 bytes). A row's length must therefore be a multiple of the block size.
//!
//! [`GgmlType`] is the set jielong reads; [`type_name`] and [`type_layout`] know every id that
//! gguf-py's `GGMLQuantizationType` (gguf 0.19.0) lists, so that the reader can check the bounds of
//! tensors it will not decode and name their type in errors.

use std::fmt;

/// Values in one K-quant super-block.
pub const QK_K: usize = 256;

/// The ggml tensor types jielong reads (de-quantizes and re-blocks). The discriminant is the ggml
/// type id written in GGUF files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
}

impl GgmlType {
    /// Every readable type, in id order.
    pub const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::BF16,
    ];

    /// The readable type with this ggml id, if jielong reads it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The ggml type id (as written in GGUF tensor infos).
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name for the type ("Q4_K", "BF16", ...).
    pub fn name(self) -> &'static str {
        type_name(self.id()).unwrap_or("?")
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        self.layout().0
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.layout().1
    }

    fn layout(self) -> (usize, usize) {
        let (b, s) = type_layout(self.id()).unwrap_or((1, 1));
        (b as usize, s as usize)
    }

    /// Bytes holding `n` values, or `None` if `n` is not a whole number of blocks (or overflows).
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let (b, s) = self.layout();
        if !n.is_multiple_of(b as u64) {
            return None;
        }
        (n / b as u64).checked_mul(s as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// (id, name, values per block, bytes per block) for every type gguf-py 0.19.0 knows.
/// The layouts are what the bounds checks of the reader need even for types it does not decode.
const TABLE: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

/// ggml's name for a type id, for any type ggml defines (not only those jielong reads).
pub fn type_name(id: u32) -> Option<&'static str> {
    TABLE.iter().find(|e| e.0 == id).map(|e| e.1)
}

/// (values per block, bytes per block) for any type id ggml defines.
pub fn type_layout(id: u32) -> Option<(u64, u64)> {
    TABLE.iter().find(|e| e.0 == id).map(|e| (e.2, e.3))
}

/// "10 (Q2_K)" or "99 (unknown)": how errors name a type id.
pub(crate) fn describe_type(id: u32) -> String {
    format!("{id} ({})", type_name(id).unwrap_or("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_types_match_the_table() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(format!("{t:?}"), t.name());
        }
        assert_eq!(GgmlType::Q4_K.type_size(), 2 + 2 + 12 + 128);
        assert_eq!(GgmlType::Q5_K.type_size(), 2 + 2 + 12 + 32 + 128);
        assert_eq!(GgmlType::Q6_K.type_size(), 128 + 64 + 16 + 2);
        assert_eq!(GgmlType::from_id(10), None);
        assert_eq!(describe_type(10), "10 (Q2_K)");
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(GgmlType::Q8_0.bytes_for(65), None);
    }
}
