//! The thread pool: every task exactly once, nested and concurrent use, panics.

use std::sync::atomic::{AtomicUsize, Ordering};

use jielong_kernels::Pool;

#[test]
fn every_task_runs_exactly_once() {
    for threads in 1..=3 {
        let pool = Pool::new(threads);
        for n in [0usize, 1, 2, 3, 5, 64, 1000] {
            for _ in 0..50 {
                let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "threads {threads} n {n}"
                );
            }
        }
    }
}

#[test]
fn many_calls_in_a_row_and_after_idle_pauses() {
    let pool = Pool::new(3);
    let total = AtomicUsize::new(0);
    for round in 0..20_000usize {
        pool.run(3, &|i| {
            total.fetch_add(i + 1, Ordering::Relaxed);
        });
        if round % 5000 == 0 {
            // Long enough for the workers to park.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    assert_eq!(total.load(Ordering::Relaxed), 20_000 * 6);
}

#[test]
fn tasks_use_more_than_one_thread() {
    let pool = Pool::new(2);
    let ids = std::sync::Mutex::new(std::collections::HashSet::new());
    // Tasks that take a while, so the worker has time to wake and claim some.
    for _ in 0..200 {
        pool.run(8, &|_| {
            ids.lock().unwrap().insert(std::thread::current().id());
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_micros(50) {}
        });
        if ids.lock().unwrap().len() == 2 {
            return;
        }
    }
    panic!("a 2-thread pool ran every task on one thread");
}

#[test]
fn nested_calls_run_inline() {
    let pool = Pool::new(2);
    let count = AtomicUsize::new(0);
    pool.run(4, &|_| {
        pool.run(5, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
    });
    assert_eq!(count.load(Ordering::Relaxed), 20);
}

#[test]
fn concurrent_callers_share_a_pool() {
    let pool = Pool::new(2);
    let count = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..2000 {
                    pool.run(3, &|_| {
                        count.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
        }
    });
    assert_eq!(count.load(Ordering::Relaxed), 3 * 2000 * 3);
}

#[test]
fn a_panicking_task_is_reported_and_the_pool_still_works() {
    let pool = Pool::new(3);
    let done = AtomicUsize::new(0);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.run(30, &|i| {
            if i == 7 {
                panic!("task 7");
            }
            done.fetch_add(1, Ordering::Relaxed);
        })
    }));
    assert!(result.is_err());
    // Every other task still ran before `run` returned.
    assert_eq!(done.load(Ordering::Relaxed), 29);
    let count = AtomicUsize::new(0);
    pool.run(10, &|_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), 10);
}

#[test]
#[should_panic(expected = "at least one thread")]
fn zero_threads_is_refused() {
    Pool::new(0);
}

#[test]
fn dropping_a_pool_with_parked_workers_returns() {
    for _ in 0..5 {
        let pool = Pool::new(3);
        pool.run(3, &|_| {});
        std::thread::sleep(std::time::Duration::from_millis(2));
        drop(pool);
    }
}
