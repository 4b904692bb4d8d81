//! Weight formats: byte layouts against hand-built blocks, and quantization error bounds.
#![allow(clippy::needless_range_loop)]

mod common;

use common::Rng;
use jielong_kernels::KernelError;
use jielong_kernels::quant::{
    MatRef, WeightType, bf16_to_f32, dequantize, f16_to_f32, f32_to_bf16, f32_to_f16, quantize,
};

fn f16_bytes(v: f32) -> [u8; 2] {
    f32_to_f16(v).to_le_bytes()
}

#[test]
fn names_round_trip() {
    for ty in WeightType::ALL {
        assert_eq!(ty.name().parse::<WeightType>(), Ok(ty));
        assert_eq!(ty.to_string(), ty.name());
    }
    assert_eq!("Q4_1".parse::<WeightType>(), Ok(WeightType::Q4_1));
    assert!(matches!(
        "q5_0".parse::<WeightType>(),
        Err(KernelError::UnknownType(_))
    ));
}

#[test]
fn bytes_per_row_and_block_errors() {
    assert_eq!(WeightType::F32.bytes_per_row(7), Ok(28));
    assert_eq!(WeightType::Bf16.bytes_per_row(7), Ok(14));
    assert_eq!(WeightType::Q8_0.bytes_per_row(64), Ok(68));
    assert_eq!(WeightType::Q4_0.bytes_per_row(64), Ok(36));
    assert_eq!(WeightType::Q4_1.bytes_per_row(96), Ok(60));
    for ty in [WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_1] {
        assert!(matches!(
            ty.bytes_per_row(33),
            Err(KernelError::RowNotBlocks { cols: 33, .. })
        ));
        assert!(quantize(ty, &[0.0; 66], 33).is_err());
    }
    assert!(matches!(
        quantize(WeightType::F32, &[0.0; 10], 3),
        Err(KernelError::RaggedValues { .. })
    ));
    let err = MatRef::new(WeightType::Q4_0, 2, 32, &[0u8; 35]).unwrap_err();
    assert_eq!(
        err,
        KernelError::WrongByteLength {
            ty: WeightType::Q4_0,
            rows: 2,
            cols: 32,
            expected: 36,
            got: 35
        }
    );
    assert!(MatRef::new(WeightType::Q4_0, 2, 32, &[0u8; 36]).is_ok());
    assert!(dequantize(WeightType::Q8_0, &[0u8; 35], 32).is_err());
}

#[test]
fn q4_0_block_layout() {
    // d = 0.5; byte j holds element j (low nibble) and element j + 16 (high nibble).
    let mut block = Vec::new();
    block.extend_from_slice(&f16_bytes(0.5));
    for j in 0..16u8 {
        block.push(j | ((15 - j) << 4));
    }
    let v = dequantize(WeightType::Q4_0, &block, 32).unwrap();
    for j in 0..16 {
        assert_eq!(v[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(v[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
    }
}

#[test]
fn q4_1_block_layout() {
    let mut block = Vec::new();
    block.extend_from_slice(&f16_bytes(0.25));
    block.extend_from_slice(&f16_bytes(-1.0));
    for j in 0..16u8 {
        block.push((j % 16) | (3 << 4));
    }
    let v = dequantize(WeightType::Q4_1, &block, 32).unwrap();
    for j in 0..16 {
        assert_eq!(v[j], j as f32 * 0.25 - 1.0);
        assert_eq!(v[j + 16], 3.0 * 0.25 - 1.0);
    }
}

#[test]
fn q8_0_block_layout() {
    let mut block = Vec::new();
    block.extend_from_slice(&f16_bytes(2.0));
    for j in 0..32i8 {
        block.push((j * 4 - 64) as u8);
    }
    let v = dequantize(WeightType::Q8_0, &block, 32).unwrap();
    for j in 0..32 {
        assert_eq!(v[j], (j as f32 * 4.0 - 64.0) * 2.0);
    }
}

#[test]
fn quantized_blocks_match_ggml_reference_by_hand() {
    // Q8_0 of 0..32 / 4: amax 7.75, d = 7.75 / 127, q = round(x * 127 / 7.75).
    let x: Vec<f32> = (0..32).map(|i| i as f32 / 4.0 - 4.0).collect();
    let b = quantize(WeightType::Q8_0, &x, 32).unwrap();
    let d = 4.0f32 / 127.0; // amax = |-4|
    assert_eq!(b[..2], f16_bytes(d));
    for (i, v) in x.iter().enumerate() {
        assert_eq!(b[2 + i] as i8, (v * (1.0 / d)).round() as i8, "element {i}");
    }
    assert_eq!(b[2] as i8, -127);

    // Q4_0: the largest magnitude (-4, negative) maps to level 0, d = -4 / -8 = 0.5.
    let b = quantize(WeightType::Q4_0, &x, 32).unwrap();
    assert_eq!(b[..2], f16_bytes(0.5));
    assert_eq!(b[2] & 15, 0); // x[0] = -4 -> level 0
    // x[31] = 3.75: 3.75 / 0.5 + 8.5 = 16 -> capped at 15 (stored in the high nibble of byte 15).
    assert_eq!(b[2 + 15] >> 4, 15);
    // x[16] = 0 -> level 8 (high nibble of byte 0).
    assert_eq!(b[2] >> 4, 8);

    // Q4_1: min -4, max 3.75, d = 7.75 / 15.
    let b = quantize(WeightType::Q4_1, &x, 32).unwrap();
    assert_eq!(b[..2], f16_bytes(7.75 / 15.0));
    assert_eq!(b[2..4], f16_bytes(-4.0));
    assert_eq!(b[4] & 15, 0);
    assert_eq!(b[4 + 15] >> 4, 15);
}

#[test]
fn bf16_rounds_to_nearest_even() {
    // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
    assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), f32_to_bf16(1.0));
    // 1 + 3 * 2^-8 is halfway too; the even neighbour is 1 + 2^-6.
    assert_eq!(
        bf16_to_f32(f32_to_bf16(1.0 + 3.0 / 256.0)),
        1.0 + 4.0 / 256.0
    );
    assert_eq!(
        bf16_to_f32(f32_to_bf16(1.0 + 1.5 / 256.0)),
        1.0 + 2.0 / 256.0
    );
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    assert_eq!(bf16_to_f32(f32_to_bf16(f32::INFINITY)), f32::INFINITY);
    assert_eq!(
        bf16_to_f32(f32_to_bf16(-0.0)).to_bits(),
        (-0.0f32).to_bits()
    );
    // Byte layout: little-endian upper half of the f32.
    let b = quantize(WeightType::Bf16, &[1.0, -2.0], 2).unwrap();
    assert_eq!(b, vec![0x80, 0x3f, 0x00, 0xc0]);
}

#[test]
fn f32_layout_is_little_endian() {
    let b = quantize(WeightType::F32, &[1.0, -2.5], 2).unwrap();
    assert_eq!(b, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    assert_eq!(dequantize(WeightType::F32, &b, 2).unwrap(), vec![1.0, -2.5]);
}

/// Per-element error bounds of quantize -> dequantize on random rows of several scales.
#[test]
fn quantization_error_bounds() {
    let mut rng = Rng::new(11);
    for scale in [1e-3f32, 1.0, 37.0] {
        let cols = 256;
        let x = rng.vec(16 * cols, scale);

        // bf16: relative error at most 2^-8 (round to nearest of an 8-bit significand: 2^-9).
        let y = dequantize(
            WeightType::Bf16,
            &quantize(WeightType::Bf16, &x, cols).unwrap(),
            cols,
        )
        .unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= a.abs() * 2f32.powi(-8), "bf16 {a} -> {b}");
        }

        for (blk, bytes) in x
            .chunks(32)
            .zip(quantize(WeightType::Q8_0, &x, cols).unwrap().chunks(34))
        {
            let d16 = f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
            let d = blk.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let y = dequantize(WeightType::Q8_0, bytes, 32).unwrap();
            for (i, (a, b)) in blk.iter().zip(&y).enumerate() {
                // Rounding to the nearest level: d/2; the f16 scale moves level q by q |d - d16|.
                let q = (bytes[2 + i] as i8) as f32;
                let bound = d / 2.0 + q.abs() * (d - d16).abs() + 1e-6 * d;
                assert!((a - b).abs() <= bound, "q8_0 {a} -> {b}, bound {bound}");
            }
        }

        for (blk, bytes) in x
            .chunks(32)
            .zip(quantize(WeightType::Q4_0, &x, cols).unwrap().chunks(18))
        {
            let d16 = f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
            let max = blk
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let y = dequantize(WeightType::Q4_0, bytes, 32).unwrap();
            for (a, b) in blk.iter().zip(&y) {
                // Level (x/d + 8) is rounded to the nearest of 0..=15: error d/2, except that the
                // top level 16 (the opposite extreme) is capped at 15; plus the f16 scale's error.
                let ideal = a / d + 8.0;
                let cap = (ideal - 15.5).max(0.0) * d.abs();
                let bound = d.abs() / 2.0 + cap + 8.0 * (d - d16).abs() + 1e-6 * d.abs();
                assert!((a - b).abs() <= bound, "q4_0 {a} -> {b}, bound {bound}");
            }
        }

        for (blk, bytes) in x
            .chunks(32)
            .zip(quantize(WeightType::Q4_1, &x, cols).unwrap().chunks(20))
        {
            let d16 = f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
            let m16 = f16_to_f32(u16::from_le_bytes([bytes[2], bytes[3]]));
            let min = blk.iter().fold(f32::MAX, |m, &v| m.min(v));
            let max = blk.iter().fold(-f32::MAX, |m, &v| m.max(v));
            let d = (max - min) / 15.0;
            let y = dequantize(WeightType::Q4_1, bytes, 32).unwrap();
            for (a, b) in blk.iter().zip(&y) {
                // d/2 for rounding, plus the f16 roundings of d (times level <= 15) and of min.
                let bound =
                    d / 2.0 + 15.0 * (d - d16).abs() + (min - m16).abs() + 1e-6 * d.max(min.abs());
                assert!((a - b).abs() <= bound, "q4_1 {a} -> {b}, bound {bound}");
            }
        }
    }
}

#[test]
fn zero_blocks_stay_zero() {
    for ty in WeightType::ALL {
        let b = quantize(ty, &[0.0; 64], 64).unwrap();
        assert_eq!(dequantize(ty, &b, 64).unwrap(), vec![0.0; 64], "{ty}");
    }
}

#[test]
fn matref_rows_and_embedding_lookup() {
    let mut rng = Rng::new(12);
    let x = rng.vec(3 * 64, 1.0);
    for ty in WeightType::ALL {
        let bytes = quantize(ty, &x, 64).unwrap();
        let all = dequantize(ty, &bytes, 64).unwrap();
        let m = MatRef::new(ty, 3, 64, &bytes).unwrap();
        assert_eq!(m.row(1).len(), m.row_bytes());
        let mut row = vec![0f32; 64];
        m.dequantize_row(2, &mut row);
        assert_eq!(row, all[128..]);
    }
}
