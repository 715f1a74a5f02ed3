//! Bounded concurrency without an async runtime: a few scoped threads share one work list.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Runs `work` on every item, at most `concurrency` at a time, and returns the results in the
/// items' order. After the first error no new item is started, and the error of the earliest
/// failed item is returned.
pub fn try_map<I, R, E>(items: &[I], concurrency: usize, work: impl Fn(&I) -> Result<R, E> + Sync) -> Result<Vec<R>, E>
where
    I: Sync,
    R: Send,
    E: Send,
{
    let workers = concurrency.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
                }
            });
        }
    });
    let mut done = Vec::with_capacity(items.len());
    for result in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        match result {
            Some(Ok(value)) => done.push(value),
            Some(Err(error)) => return Err(error),
            // Not started because an earlier-started item failed; that error comes later in order.
            None => continue,
        }
    }
    Ok(done)
}

/// `try_map` over items each work may change: every item is given to one worker alone.
pub fn try_map_mut<I, R, E>(
    items: &mut [I],
    concurrency: usize,
    work: impl Fn(&mut I) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    I: Send,
    R: Send,
    E: Send,
{
    let cells: Vec<Mutex<&mut I>> = items.iter_mut().map(Mutex::new).collect();
    try_map(&cells, concurrency, |cell| work(&mut cell.lock().unwrap_or_else(|e| e.into_inner())))
}

/// A bound on work under way across threads: `run` waits for a free place when `most` are
/// running.
pub struct Limit {
    /// (running, waiting for a place).
    state: Mutex<(usize, usize)>,
    freed: Condvar,
    most: usize,
}

impl Limit {
    pub fn new(most: usize) -> Limit {
        Limit { state: Mutex::new((0, 0)), freed: Condvar::new(), most: most.max(1) }
    }

    /// Runs `work` once fewer than `most` others run.
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.0 >= self.most {
                state.1 += 1;
                state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
                state.1 -= 1;
            }
            state.0 += 1;
        }
        let result = work();
        let waiting = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 -= 1;
            state.1
        };
        // Waking is a system call each time: only when someone waits (80,000 reads made one
        // each for nobody).
        if waiting > 0 {
            self.freed.notify_one();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_keep_the_order_of_the_items_and_the_bound_holds() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u64> = (0..40).collect();
        let out = try_map(&items, 3, |n| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2 + (n * 7) % 5));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>(n * 2)
        })
        .unwrap();
        assert_eq!(out, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_error_stops_new_work_and_is_returned() {
        let started = AtomicUsize::new(0);
        let items: Vec<u64> = (0..100).collect();
        let out = try_map(&items, 2, |n| {
            started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            if *n == 5 {
                Err(format!("item {n} failed"))
            } else {
                Ok(*n)
            }
        });
        assert_eq!(out, Err("item 5 failed".to_string()));
        assert!(started.load(Ordering::SeqCst) < 20, "work went on after the error");
        assert_eq!(try_map(&items[..3], 1, |n| if *n == 1 { Err(*n) } else { Ok(*n) }), Err(1));
        assert_eq!(try_map(&[] as &[u64], 4, |n| Ok::<_, ()>(*n)), Ok(vec![]));
    }

    #[test]
    fn each_item_is_changed_once_in_place_and_the_limit_holds_across_threads() {
        let limit = Limit::new(2);
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut items: Vec<u64> = (0..30).collect();
        let out = try_map_mut(&mut items, 4, |n| {
            limit.run(|| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1 + *n % 3));
                running.fetch_sub(1, Ordering::SeqCst);
            });
            *n += 100;
            Ok::<_, ()>(*n)
        })
        .unwrap();
        assert_eq!(items, (100..130).collect::<Vec<u64>>());
        assert_eq!(out, items);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
