//! Matrix products of a batch of activation rows with a weight matrix: `y = x Wᵀ + b`.
//!
//! The decode path multiplies `batch` rows of activations (one per new token of every sequence
//! in the batch) by each weight matrix. Threads split the **output rows** of the weights (never
//! the reduction), so each output is computed by one thread from start to end.
//!
//! # Determinism
//!
//! Every output element is computed by the same sequence of IEEE operations whatever the batch
//! size, its row in the batch, the other rows, the number of threads and the tiling: the
//! element `i` accumulated by a fused multiply-add into lane `i % 16` of 16 partial sums, the
//! lanes added by a fixed tree ((l, l+8), (l, l+4), (l, l+2), (0, 1)), then `+ bias`.
//! A server can batch unrelated requests and each gets the bits it would get alone. The three
//! instruction-set paths give the same bits as well.
//!
//! # Reading order
//!
//! A batch of one reuses no weight, so its speed is the memory's: a matrix of 4 MiB or more is
//! read one weight row after another (sequential streams, which the hardware prefetchers serve
//! at full bandwidth), a smaller one four rows side by side (faster in cache) with software
//! prefetches of the rows two tiles on, in address order. Neither changes any output's FMAs.
//!
//! # Quantized weights
//!
//! Quantized and bf16 weights are widened to f32 in registers (a block's integers converted and
//! multiplied by its f16 scale, which is exact) and multiplied with the f32 activations by the
//! same FMAs as f32 weights. So a quantized product gives **exactly** the f32 product of the
//! de-quantized weights: the only error is the weights' own quantization error, with no
//! activation quantization on top (unlike llama.cpp's Q8 activations with integer dot
//! products, which trade accuracy for 4x more multiply-adds per instruction at large batch).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

#[cfg(target_arch = "x86_64")]
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
use crate::aligned::Aligned;
use crate::isa::Isa;
use crate::pool::Pool;
use crate::quant::{MatRef, WeightType};

/// From this size on, a matrix multiplied by one activation row is read one weight row after
/// another (see "Reading order" above); smaller ones are likely in cache, where reading a tile's
/// rows side by side (independent FMA chains) is faster.
const STREAMED_BYTES: usize = 4 << 20;

/// Products sharing one input that [`matmul_many`] runs in one parallel region at a time.
const MAX_JOBS: usize = 8;

/// One product for [`matmul_many`]: the weights, an optional bias (`rows` values) and the
/// output (`batch * rows` values, row-major `[batch][rows]`).
pub type Job<'a, 'b> = (MatRef<'a>, Option<&'a [f32]>, &'b mut [f32]);

/// `out[b * rows + o] = bias[o] + Σ_i x[b * cols + i] * W[o][i]`.
///
/// # Shapes
/// - `x`: `[batch][cols]` activations, row-major.
/// - `w`: `[rows][cols]` weights of any [`WeightType`].
/// - `bias`: `[rows]` or `None`.
/// - `out`: `[batch][rows]`, overwritten.
///
/// # Panics
/// When the slice lengths do not match these shapes.
pub fn matmul(
    pool: &Pool,
    x: &[f32],
    batch: usize,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    matmul_with(Isa::best(), pool, x, batch, w, bias, out)
}

/// [`matmul`] on a chosen instruction-set path (for tests and benchmarks). Panics if the CPU
/// does not support `isa`.
pub fn matmul_with(
    isa: Isa,
    pool: &Pool,
    x: &[f32],
    batch: usize,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    matmul_many_with(isa, pool, x, batch, &mut [(w, bias, out)])
}

/// Several products of the same input (Q, K and V; gate and up) in one parallel region: the
/// output rows of all of them are split across the threads together, which halves the
/// synchronisation of a decode step and balances small matrices.
///
/// # Shapes
/// - `x`: `[batch][cols]`; every job's weights must have `cols` columns.
/// - each job: weights `[rows_j][cols]`, bias `[rows_j]` or `None`, output `[batch][rows_j]`.
///
/// # Panics
/// When the slice lengths do not match these shapes.
pub fn matmul_many(pool: &Pool, x: &[f32], batch: usize, jobs: &mut [Job<'_, '_>]) {
    matmul_many_with(Isa::best(), pool, x, batch, jobs)
}

/// [`matmul_many`] on a chosen instruction-set path. Panics if the CPU does not support `isa`.
pub fn matmul_many_with(isa: Isa, pool: &Pool, x: &[f32], batch: usize, jobs: &mut [Job<'_, '_>]) {
    isa.assert_available();
    for group in jobs.chunks_mut(MAX_JOBS) {
        run_group(isa, pool, x, batch, group);
    }
}

/// Everything a kernel needs about one product, as raw pointers so that threads can write
/// disjoint output rows of the same slice.
#[derive(Clone, Copy)]
pub(crate) struct Args {
    /// `[batch][cols]` activations.
    pub x: *const f32,
    pub batch: usize,
    pub cols: usize,
    pub ty: WeightType,
    /// `[rows][row_bytes]` weights.
    pub w: *const u8,
    pub row_bytes: usize,
    /// `[rows]`, or null for no bias.
    pub bias: *const f32,
    /// `[batch][rows]` outputs.
    pub out: *mut f32,
    pub rows: usize,
    /// [`crate::quant::f16_table`], for the SIMD kernels' block scales.
    pub f16: *const f32,
}

// SAFETY: the pointers come from slices borrowed for the whole parallel region, and the
// threads write disjoint output rows.
unsafe impl Send for Args {}
unsafe impl Sync for Args {}

impl Args {
    const EMPTY: Args = Args {
        x: std::ptr::null(),
        batch: 0,
        cols: 0,
        ty: WeightType::F32,
        w: std::ptr::null(),
        row_bytes: 0,
        bias: std::ptr::null(),
        out: std::ptr::null_mut(),
        rows: 0,
        f16: std::ptr::null(),
    };
}

fn run_group(isa: Isa, pool: &Pool, x: &[f32], batch: usize, jobs: &mut [Job<'_, '_>]) {
    if batch == 0 || jobs.is_empty() {
        return;
    }
    assert_eq!(
        x.len() % batch,
        0,
        "matmul: x holds {} values, not {batch} rows",
        x.len()
    );
    let cols = x.len() / batch;
    let f16 = crate::quant::f16_table().as_ptr();
    let mut args = [Args::EMPTY; MAX_JOBS];
    let mut total_rows = 0;
    for (a, (w, bias, out)) in args.iter_mut().zip(jobs.iter_mut()) {
        assert_eq!(
            w.cols(),
            cols,
            "matmul: weights have {} columns, x rows have {cols}",
            w.cols()
        );
        assert_eq!(
            out.len(),
            batch * w.rows(),
            "matmul: output length for {batch}x{}",
            w.rows()
        );
        if let Some(b) = bias {
            assert_eq!(b.len(), w.rows(), "matmul: bias length");
        }
        *a = Args {
            x: x.as_ptr(),
            batch,
            cols,
            ty: w.ty(),
            w: w.data().as_ptr(),
            row_bytes: w.row_bytes(),
            bias: bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            out: out.as_mut_ptr(),
            rows: w.rows(),
            f16,
        };
        total_rows += w.rows();
    }
    let args = &args[..jobs.len()];
    if total_rows == 0 || cols == 0 {
        // No reduction: every output is its bias (or zero).
        // SAFETY: bias and out hold `rows` and `batch * rows` values (checked above).
        for a in args {
            for r in 0..a.rows {
                let v = if a.bias.is_null() {
                    0.0
                } else {
                    unsafe { *a.bias.add(r) }
                };
                for b in 0..batch {
                    unsafe { *a.out.add(b * a.rows + r) = v };
                }
            }
        }
        return;
    }

    // Contiguous ranges of the rows of all jobs, cut at multiples of 4 (the kernels' row tile).
    let tasks = pool.tasks_for(batch * cols * total_rows, total_rows.div_ceil(4));
    let bound = |t: usize| ((total_rows * t / tasks) / 4 * 4).min(total_rows);
    let task = |t: usize| {
        let (start, end) = (
            bound(t),
            if t + 1 == tasks {
                total_rows
            } else {
                bound(t + 1)
            },
        );
        let mut offset = 0;
        for a in args {
            let (lo, hi) = (start.max(offset), end.min(offset + a.rows));
            if lo < hi {
                // SAFETY: `isa` is available (checked above), the pointers are valid for the
                // shapes checked above and rows lo..hi of this job belong to this task only.
                unsafe { rows(isa, a, lo - offset, hi - offset) };
            }
            offset += a.rows;
        }
    };
    if tasks == 1 {
        task(0);
    } else {
        pool.run(tasks, &task);
    }
}

/// Runs `f` with this thread's panel of at least `len` floats: the SIMD kernels widen quantized
/// weight rows into it once per row tile when a batch would otherwise widen them once per
/// batch tile.
#[cfg(target_arch = "x86_64")]
fn with_panel<T>(len: usize, f: impl FnOnce(&mut [f32]) -> T) -> T {
    thread_local! {
        static PANEL: RefCell<Aligned<f32>> = const { RefCell::new(Aligned::new()) };
    }
    with_scratch(&PANEL, len, f)
}

/// Runs `f` with this thread's buffer of at least `len` floats for the accumulators that
/// [`in_blocks`] keeps between the parts of a long reduction.
#[cfg(target_arch = "x86_64")]
fn with_carry<T>(len: usize, f: impl FnOnce(&mut [f32]) -> T) -> T {
    thread_local! {
        static CARRY: RefCell<Aligned<f32>> = const { RefCell::new(Aligned::new()) };
    }
    with_scratch(&CARRY, len, f)
}

/// A thread's scratch buffer, on cache lines (the kernels load and store it 64 bytes at a
/// time): it grows to the largest size needed and is then reused (no allocation per call).
#[cfg(target_arch = "x86_64")]
fn with_scratch<T>(
    key: &'static std::thread::LocalKey<RefCell<Aligned<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> T,
) -> T {
    key.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < len {
            p.resize(len, 0.0);
        }
        f(&mut p[..len])
    })
}

/// Where and how much a tile asks for ahead of its use: the weights of the row tile two on
/// (`at`), at `rate` cache lines per step of each batch tile (in 1/65,536ths of a line), into L1
/// or into L2 ([`into_l2`]).
///
/// A row tile's batch tiles each ask for their part of the next-but-one row tile, step by step,
/// in address order, so that the requests are spread over the whole time the row tile computes;
/// bunched into its first batch tile, they left the memory idle while the later batch tiles
/// computed from cache (f32 batch 16 from memory: 110-125 -> 140-175 GFLOP/s). The rate is a
/// fraction so that the last request falls on the last step: rounded up to whole lines per
/// step (1.33 -> 2 at 576 columns), the requests ended a third of the way early and batch 16
/// lost 2-10% on two Xeon cores (SmolLM2 f32 360-384 against 383-396 tok/s).
///
/// A tile reads its weight rows side by side, and four interleaved streams 1,152 bytes apart get
/// about half the memory bandwidth of one sequential stream from the hardware prefetchers alone;
/// these prefetches make the stream sequential again (BENCHMARKS.md, "Batch 1 from memory")
/// while keeping the side-by-side order that is fastest on weights already in cache.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Ahead {
    pub at: *const u8,
    pub rate: usize,
    pub l2: bool,
}

/// Whether the prefetches go to L2 rather than L1: on Intel cores. There a prefetch into L1
/// holds one of the core's few L1 miss buffers until its line arrives from memory, which caps
/// the lines in flight; into L2 the requests wait in L2's deeper queue (the kernels' SmolLM2
/// f32 step from memory, two cores of a Xeon: batch 1 46 -> 51-54 tok/s, batch 16 364-377 ->
/// 408-411). On AMD's cores L1 was as fast or faster at 576 columns (268 GFLOP/s into L2
/// against 284 into L1, BENCHMARKS.md).
#[cfg(target_arch = "x86_64")]
fn into_l2() -> bool {
    static INTEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INTEL.get_or_init(|| {
        let id = std::arch::x86_64::__cpuid(0);
        let vendor = [id.ebx, id.edx, id.ecx].map(u32::to_le_bytes).concat();
        vendor == b"GenuineIntel"
    })
}

#[cfg(target_arch = "x86_64")]
impl Ahead {
    /// `rate` (see [`Ahead::rate`]) from `at` on.
    pub fn new(at: *const u8, rate: usize) -> Self {
        Self {
            at,
            rate,
            l2: into_l2(),
        }
    }

    /// For the row tile of `rt` rows at row `r` of `a`: its stored weights two row tiles on
    /// (`rt` rows per tile), at `rate`.
    pub fn two_tiles_on(a: &Args, r: usize, rt: usize, rate: usize) -> Self {
        Self::new(a.w.wrapping_add((r + 2 * rt) * a.row_bytes), rate)
    }

    /// The rate, in 1/65,536ths of a cache line per step, that covers row tiles of `tile_bytes`
    /// computed as `batch_tiles` batch tiles of `steps` steps (computed once per product, not
    /// per tile).
    pub fn rate(tile_bytes: usize, batch_tiles: usize, steps: usize) -> usize {
        (tile_bytes.div_ceil(64) << 16).div_ceil((batch_tiles * steps).max(1))
    }

    /// The prefetches of a tile's loop, which runs `steps` steps, in batch tile `batch_tile`,
    /// from step `from` on: step `i` of the row tile's time (`batch_tile * steps + step`) asks for
    /// the lines from `(i * rate) >> 16` to `((i + 1) * rate) >> 16`.
    #[inline(always)]
    pub fn cursor(self, batch_tile: usize, steps: usize, from: usize) -> Prefetches {
        let done = (batch_tile * steps + from) * self.rate;
        Prefetches {
            next: self.at.wrapping_add((done >> 16) * 64),
            done,
            rate: self.rate,
            base: self.at,
            l2: self.l2,
        }
    }
}

/// A tile's place in its [`Ahead`] requests: one add and a compare per step, so that the loop
/// spends its issue slots on its loads and FMAs (computing each step's lines afresh cost 10-20%
/// of a batch-16 product in cache).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Prefetches {
    /// The next line to ask for. It could be derived from `done` (`done >> 16` before the
    /// step's add), but a loop over that range of lines compiled 10-20% slower (batch 16, two
    /// threads, in cache: 576 x 1536 251-253 -> 198 GFLOP/s), so the pointer is carried.
    next: *const u8,
    /// Lines asked for so far, in 1/65,536ths, from the start of the row tile's requests.
    done: usize,
    rate: usize,
    base: *const u8,
    l2: bool,
}

#[cfg(target_arch = "x86_64")]
impl Prefetches {
    /// Asks for this step's lines.
    #[inline(always)]
    pub fn step(&mut self) {
        use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
        self.done += self.rate;
        let end = self.base.wrapping_add((self.done >> 16) * 64);
        while self.next < end {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe {
                if self.l2 {
                    _mm_prefetch::<_MM_HINT_T1>(self.next.cast())
                } else {
                    _mm_prefetch::<_MM_HINT_T0>(self.next.cast())
                }
            }
            self.next = self.next.wrapping_add(64);
        }
    }
}

/// Output rows per block of [`in_blocks`].
#[cfg(target_arch = "x86_64")]
const BLOCK: usize = 32;

/// Whether a product's activations are too large to stay in L1 beside the weights of a row
/// tile (more than 24 KiB: a batch of 16 at 576 columns, not at 288), so that its tiles run
/// [`in_blocks`].
#[cfg(target_arch = "x86_64")]
pub(crate) fn blocked(a: &Args) -> bool {
    a.batch * a.cols * 4 > 24 << 10
}

/// Reduction steps (of 16 columns) per part of a long reduction in [`in_blocks`]: at 1,536
/// columns a batch tile's six activation rows (36 KiB) and a row tile's four weight rows (24
/// KiB) no longer fit in L1 together, so the reduction runs in parts of at most 768 columns.
/// Measured (batch 16 f32, SmolLM2's down projection 576 x 1536, one core, in cache): whole
/// 137-143 GFLOP/s, parts of 384 columns 149, 512 157, 768 160; from memory on two cores 184 ->
/// 215. Parts of 384 at 768 columns (stories15M) were slower than the whole (158 against 188),
/// so a reduction is cut only beyond 1.5 parts.
#[cfg(target_arch = "x86_64")]
const PART_STEPS: usize = 48;

/// The part of a tile's reduction that one call computes: steps `from..to`, and the `slot`
/// where its accumulators wait between parts (the row tile's place in its block).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Part {
    pub from: usize,
    pub to: usize,
    pub slot: usize,
}

#[cfg(target_arch = "x86_64")]
impl Part {
    /// Whether this part is the whole reduction of `steps` steps.
    pub fn whole(self, steps: usize) -> bool {
        (self.from, self.to) == (0, steps)
    }
}

/// The tiles of output rows `r0..r1` for a batch of several batch tiles (`bt` batch rows x `rt`
/// output rows each; fewer at the ends), in blocks of [`BLOCK`] output rows: in each block the
/// batch tiles outside and its row tiles inside, so that a batch tile's activations stay in L1
/// while the block's weights (72 KiB of f32 at 576 columns) come from L2. Row tiles outside, a
/// batch of 16 at 576 columns re-read its 36 KiB of activations for every row tile, which with
/// the weights no longer fits in L1 (measured with 4 x 4 tiles, the blocks alone: batch 16 f32
/// at 576 x 576, one core, 166 -> 181 GFLOP/s; SmolLM2 batch 16 554 -> 602 tok/s).
///
/// A reduction of more than `1.5 *` [`PART_STEPS`] steps of 16 columns runs in parts, the
/// parts of a batch tile outside its row tiles, so that only a part of the activation rows is
/// in use at a time: each tile keeps its 16-lane accumulators between parts (stored and loaded
/// whole, so every lane sees the same FMAs in the same order and no output changes).
///
/// Each tile asks for its part of the same rows of the next block (at `rate`). Calls
/// `tile(b, bt, r, rt, ahead, part)`. The AVX-512 kernels only: the AVX2 ones, with 2 x 2
/// tiles, are bound by their loads, which this order moves from L1 to L2 (batch 4 f32 at 576 x
/// 576: 83 -> 70 GFLOP/s, batch 16 no faster).
#[cfg(target_arch = "x86_64")]
pub(crate) fn in_blocks(
    a: &Args,
    (r0, r1): (usize, usize),
    (bt, rt): (usize, usize),
    (steps, rate): (usize, usize),
    mut tile: impl FnMut(usize, usize, usize, usize, Ahead, Part),
) {
    let parts = if steps * 2 > PART_STEPS * 3 {
        steps.div_ceil(PART_STEPS)
    } else {
        1
    };
    let mut start = r0;
    while start < r1 {
        let end = (start + BLOCK).min(r1);
        let mut b = 0;
        while b < a.batch {
            let bn = bt.min(a.batch - b);
            for p in 0..parts {
                let (from, to) = (steps * p / parts, steps * (p + 1) / parts);
                let (mut r, mut slot) = (start, 0);
                while r < end {
                    let rn = if end - r >= rt { rt } else { 1 };
                    let ahead = Ahead::new(a.w.wrapping_add((r + end - start) * a.row_bytes), rate);
                    tile(b, bn, r, rn, ahead, Part { from, to, slot });
                    r += rn;
                    slot += 1;
                }
            }
            b += bn;
        }
        start = end;
    }
}

/// Accumulator slots [`in_blocks`] may use in one block: one per row tile.
#[cfg(target_arch = "x86_64")]
pub(crate) const SLOTS: usize = BLOCK;

/// Computes output rows `r0..r1` of one product for every batch row.
///
/// # Safety
/// `isa` must be available and `a` must describe valid, correctly sized buffers.
unsafe fn rows(isa: Isa, a: &Args, r0: usize, r1: usize) {
    match isa {
        Isa::Scalar => unsafe { portable::rows(a, r0, r1) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::rows(a, r0, r1) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::rows(a, r0, r1) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the portable path exists on this architecture"),
    }
}
