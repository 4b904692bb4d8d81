//! The crate's one error type: problems with weight data that a caller can report (a tensor
//! whose width does not fit a block format, a byte slice of the wrong length, an unknown type
//! name). Shape mismatches between slices handed to a kernel are programming errors and panic.

use crate::quant::WeightType;

/// What went wrong with weight data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A block format needs rows whose length is a multiple of its block size.
    #[error("{ty} needs rows of a multiple of {block} values, got {cols}")]
    RowNotBlocks {
        ty: WeightType,
        cols: usize,
        block: usize,
    },
    /// The byte slice does not hold exactly `rows` rows of `cols` values.
    #[error("a {rows}x{cols} {ty} matrix needs {expected} bytes, got {got}")]
    WrongByteLength {
        ty: WeightType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    /// A value slice whose length is not a whole number of rows.
    #[error("{len} values are not a whole number of rows of {cols}")]
    RaggedValues { len: usize, cols: usize },
    /// A type name that is none of "f32", "bf16", "q8_0", "q4_0", "q4_1".
    #[error("unknown weight type {0:?} (expected f32, bf16, q8_0, q4_0 or q4_1)")]
    UnknownType(String),
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
