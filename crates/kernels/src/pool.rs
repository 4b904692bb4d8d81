//! A small persistent thread pool for kernel calls of a few microseconds.
//!
//! A decode step of a tiny model is ~40 kernel calls in ~60 µs, so a parallel region must cost
//! about a microsecond: far less than a futex wake-up. Workers therefore spin on one atomic word
//! for a while after each region (a decode loop calls again within microseconds) and only then
//! park on a condition variable, so an idle pool does not burn a core.
//!
//! `run(n, f)` publishes `f` and `n` under a new *epoch*; the calling thread and the workers
//! claim task indices from the same word with compare-and-swap, so a sleeping worker never holds
//! up a region (the caller simply does the work), and the caller returns once every task has
//! finished. Nested calls (a task calling `run` on its own pool) and concurrent calls from
//! several threads run inline on the calling thread instead of waiting.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Below this many multiply-adds a kernel runs on the calling thread: a parallel region costs
/// about a microsecond, which is the whole product for the small matrices of a tiny model.
pub const DEFAULT_MIN_PARALLEL_MACS: usize = 1 << 17;

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(200);

// The state word: epoch (24 bits) | task count (20 bits) | next unclaimed task (20 bits).
const FIELD: u64 = 20;
const FIELD_MASK: u64 = (1 << FIELD) - 1;
const EPOCH_MASK: u64 = (1 << 24) - 1;
/// Most tasks published at once; larger `run`s are published in rounds.
const MAX_TASKS: usize = FIELD_MASK as usize;

fn pack(epoch: u64, n: usize, next: usize) -> u64 {
    (epoch << (2 * FIELD)) | ((n as u64) << FIELD) | next as u64
}
fn epoch_of(s: u64) -> u64 {
    s >> (2 * FIELD)
}

type Task = dyn Fn(usize) + Sync;

struct Shared {
    state: AtomicU64,
    /// The running region's closure. Written by the caller before publishing an epoch, read by
    /// a worker only after it has claimed a task of that epoch (so the region is still running
    /// and the closure, which lives in the caller's frame, is alive).
    job: UnsafeCell<*const Task>,
    done: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
}

// The raw `job` pointer is only dereferenced under the protocol above.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// Claims the next task of `epoch`, if any is left.
    fn claim(&self, epoch: u64) -> Option<usize> {
        let mut s = self.state.load(Acquire);
        loop {
            let (n, next) = (
                ((s >> FIELD) & FIELD_MASK) as usize,
                (s & FIELD_MASK) as usize,
            );
            if epoch_of(s) != epoch || next >= n {
                return None;
            }
            match self.state.compare_exchange_weak(s, s + 1, Acquire, Acquire) {
                Ok(_) => return Some(next),
                Err(now) => s = now,
            }
        }
    }

    /// Runs every task of `epoch` this thread can claim.
    fn work(&self, epoch: u64) {
        while let Some(i) = self.claim(epoch) {
            // SAFETY: task `i` is claimed and not done, so the caller is still inside `run` and
            // the closure it published for this epoch is alive.
            let f = unsafe { &**self.job.get() };
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, Relaxed);
            }
            self.done.fetch_add(1, Release);
        }
    }
}

/// Persistent worker threads that run the kernels' parallel regions.
pub struct Pool {
    threads: usize,
    min_parallel_macs: usize,
    shared: Option<Arc<Shared>>,
    workers: Vec<JoinHandle<()>>,
    busy: AtomicBool,
}

impl Pool {
    /// A pool of `threads` threads in all: the calling thread plus `threads - 1` workers.
    /// With 1 thread every region runs inline. Panics when `threads` is 0 or the workers cannot
    /// be started ([`Pool::try_new`] says why instead).
    pub fn new(threads: usize) -> Pool {
        Pool::try_new(threads).expect("starting the kernel worker threads")
    }

    /// [`Pool::new`], or the operating system's reason when it refuses a worker thread (a
    /// thread count beyond the process's limit); the workers already started are stopped.
    /// Panics when `threads` is 0.
    pub fn try_new(threads: usize) -> std::io::Result<Pool> {
        assert!(threads >= 1, "a pool needs at least one thread");
        let mut pool = Pool {
            threads,
            min_parallel_macs: DEFAULT_MIN_PARALLEL_MACS,
            shared: None,
            workers: Vec::new(),
            busy: AtomicBool::new(false),
        };
        if threads == 1 {
            return Ok(pool);
        }
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(std::ptr::null::<fn(usize)>() as *const Task),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        pool.shared = Some(Arc::clone(&shared));
        for i in 1..threads {
            let shared = Arc::clone(&shared);
            // On an error `pool` is dropped, which stops and joins the workers started so far.
            let worker = std::thread::Builder::new()
                .name(format!("jielong-kernels-{i}"))
                .spawn(move || worker(&shared))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// A pool with one thread per available core.
    pub fn all_cores() -> Pool {
        Pool::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Threads in all, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Sets the size below which kernels do not split work across threads, in multiply-adds
    /// (default [`DEFAULT_MIN_PARALLEL_MACS`]). Results do not depend on it, only speed; 0
    /// splits every call (tests use that to exercise the partitioning on tiny shapes).
    pub fn with_min_parallel_macs(mut self, macs: usize) -> Pool {
        self.min_parallel_macs = macs;
        self
    }

    /// How many tasks a kernel with `macs` multiply-adds, divisible into `units` independent
    /// units, should split into: 1 when the work is too small to pay for waking threads, else
    /// two per thread (claimed as threads become free, so a thread the OS interrupts delays the
    /// region by half a share rather than a whole one). Not more: every task starts a new
    /// stream of weights from memory, and four per thread made SmolLM2's f32 batch-16 step 6-12%
    /// slower than two (BENCHMARKS.md, "Warm cores").
    pub fn tasks_for(&self, macs: usize, units: usize) -> usize {
        if self.threads == 1 || macs < self.min_parallel_macs {
            1
        } else {
            (2 * self.threads).min(units).max(1)
        }
    }

    /// Runs `f(0)`, …, `f(n_tasks - 1)`, each exactly once, split across the pool's threads, and
    /// returns when all have finished. A panic in a task is re-raised here after every other
    /// task has finished.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let inline = || (0..n_tasks).for_each(f);
        let Some(shared) = &self.shared else {
            return inline();
        };
        if n_tasks <= 1 {
            return inline();
        }
        // One region at a time: a nested or concurrent call does its tasks itself.
        if self.busy.swap(true, Acquire) {
            return inline();
        }
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _busy = Release(&self.busy);

        let mut start = 0;
        while start < n_tasks {
            let n = (n_tasks - start).min(MAX_TASKS);
            let offset = start;
            let shifted = move |i: usize| f(offset + i);
            let g: &(dyn Fn(usize) + Sync) = if offset == 0 { f } else { &shifted };
            region(shared, n, g);
            start += n;
        }
    }
}

/// Publishes one region of `n` tasks, helps with it and waits for it to finish.
fn region(shared: &Shared, n: usize, f: &(dyn Fn(usize) + Sync)) {
    shared.done.store(0, Relaxed);
    shared.panicked.store(false, Relaxed);
    // SAFETY: no task of an earlier epoch is unfinished (the previous region waited for all of
    // them), so no worker reads `job` now; erasing the lifetime is sound because this function
    // does not return before every task of this epoch has finished.
    unsafe {
        *shared.job.get() =
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Task>(f)
    };
    let epoch = (epoch_of(shared.state.load(Relaxed)) + 1) & EPOCH_MASK;
    // SeqCst pairs with the sleepers' SeqCst increment-then-check (no lost wake-up).
    shared.state.store(pack(epoch, n, 0), SeqCst);
    if shared.sleepers.load(SeqCst) > 0 {
        let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        shared.wake.notify_all();
    }
    shared.work(epoch);
    let mut spins = 0u32;
    while shared.done.load(Acquire) < n {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            // A worker was descheduled mid-task: let it run.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    if shared.panicked.load(Relaxed) {
        resume_unwind(Box::new("a task of a kernel pool region panicked"));
    }
}

fn worker(shared: &Shared) {
    let mut seen = epoch_of(shared.state.load(Acquire));
    loop {
        let spin_start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = epoch_of(shared.state.load(Acquire));
            if e != seen {
                break e;
            }
            if shared.shutdown.load(Relaxed) {
                return;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && spin_start.elapsed() > SPIN {
                // Park until a region is published or the pool is dropped.
                let mut guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
                shared.sleepers.fetch_add(1, SeqCst);
                while epoch_of(shared.state.load(SeqCst)) == seen && !shared.shutdown.load(SeqCst) {
                    guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                shared.sleepers.fetch_sub(1, SeqCst);
            } else {
                std::hint::spin_loop();
            }
        };
        seen = epoch;
        shared.work(epoch);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.shutdown.store(true, SeqCst);
            // Notify under the lock (a worker between its check and its wait cannot miss it),
            // and release the lock before joining: waking workers need it.
            drop(shared.lock.lock().unwrap_or_else(|e| e.into_inner()));
            shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads)
            .finish()
    }
}
