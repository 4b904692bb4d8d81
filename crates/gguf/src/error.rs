//! Errors. Messages are sentences for a user: the CLI prints them as `error: FILE: MESSAGE`, so
//! they say what is wrong and where (byte offset, key or tensor name) but not the file name,
//! except for I/O errors, where the operating system's message alone would not say which file.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the file is empty, not a GGUF file")]
    Empty,

    #[error("not a GGUF file: it starts with {found:?} instead of \"GGUF\"")]
    NotGguf { found: String },

    #[error(
        "this is a big-endian GGUF file (version field {raw:#010x}); jielong reads little-endian files only"
    )]
    BigEndian { raw: u32 },

    #[error(
        "GGUF version 1 (the 2023 pre-release format) is not supported: convert the model again with a current llama.cpp"
    )]
    Version1,

    #[error("GGUF version {0} is not supported (jielong reads versions 2 and 3)")]
    UnsupportedVersion(u32),

    #[error(
        "the file is truncated: {what} at byte {offset} needs {needed} bytes, but the file ends at byte {file_len}"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },

    #[error(
        "{what} at byte {offset} claims {count} entries, more than the {remaining} bytes left in the file can hold (the file is truncated or corrupt)"
    )]
    ImplausibleCount {
        what: String,
        offset: u64,
        count: u64,
        remaining: u64,
    },

    #[error("metadata key {key:?} has value type {type_id}, which is not a GGUF value type")]
    UnknownValueType { key: String, type_id: u32 },

    #[error("metadata key {key:?} nests arrays more than {limit} deep")]
    NestingTooDeep { key: String, limit: usize },

    #[error("{what} at byte {offset} is not valid UTF-8")]
    NotUtf8 { what: String, offset: u64 },

    #[error("{0} is not valid UTF-8")]
    ValueNotUtf8(String),

    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),

    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),

    #[error("general.alignment is {0}, but it must be a power of two (GGUF's default is 32)")]
    BadAlignment(String),

    #[error("tensor {tensor:?} has {n_dims} dimensions; ggml tensors have at most 4")]
    TooManyDims { tensor: String, n_dims: u32 },

    #[error("tensor {tensor:?} has shape {dims:?}, whose size overflows")]
    SizeOverflow { tensor: String, dims: Vec<u64> },

    #[error(
        "tensor {tensor:?} is {ty} with rows of {row} values, which is not a multiple of its block size {block}"
    )]
    RowNotBlockMultiple {
        tensor: String,
        ty: &'static str,
        row: u64,
        block: u64,
    },

    #[error(
        "tensor {tensor:?} has data offset {offset}, which is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error(
        "tensor {tensor:?} needs bytes {start}..{end} of the data section, but the data section has {data_len} bytes (the file is truncated or the offset is wrong)"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        data_len: u64,
    },

    #[error("tensor {tensor:?} has ggml type {type_desc}, which jielong does not read")]
    UnsupportedTensorType { tensor: String, type_desc: String },

    #[error("tensor {tensor:?} of type {ty} and dims {dims:?} needs {expected} bytes, got {got}")]
    DataLength {
        tensor: String,
        ty: &'static str,
        dims: Vec<u64>,
        expected: u64,
        got: u64,
    },

    #[error("no tensor named {0:?} in the file")]
    NoSuchTensor(String),

    #[error("metadata key {0:?} is missing")]
    MissingKey(String),

    #[error("metadata key {key:?} holds {found}, but {expected} was expected")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("metadata key {key:?} holds {value}, which does not fit in {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },

    #[error(
        "tensor {tensor:?}: a block scale {value} does not fit in f16 when re-blocking {from} to {to}"
    )]
    ReblockOverflow {
        tensor: String,
        from: &'static str,
        to: &'static str,
        value: f32,
    },

    #[error(transparent)]
    Kernel(#[from] jielong_kernels::KernelError),

    /// A mistake of the program writing a file (wrong data length, tensors out of order...).
    #[error("cannot write GGUF: {0}")]
    Write(String),
}

/// `Result` with [`GgufError`].
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
