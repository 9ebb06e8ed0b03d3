//! `peers-allocs [N] [REPEATS]`: allocations and bytes allocated per call, for every stack.
//!
//! A counting global allocator (in this binary only, so that it costs the other figures
//! nothing) counts every allocation of the client process; the server is another process.
//! Each stack is warmed up, then makes N calls and 2N calls: (2N − N) / N is one measurement,
//! the per-round costs (64 task spawns) cancelling. Each stack is measured REPEATS times
//! (default 3): the median is the figure, and all of them show whether it is stable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use resilient_http_peers::{STACKS, Server, all, arg, block_on, pin_to};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    // A growth counts as an allocation of the new size (it may move the block).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counts() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, 1, 2_000);
    let repeats = arg(&args, 2, 3);
    let server = Server::start();
    pin_to(0);
    let all = all();
    let mut rows = Vec::new();
    let mut opened = 0;
    block_on(async {
        for stack in &all {
            stack.warm_up(server.url).await;
            let before = server.stats().0;
            let mut measured = Vec::new();
            for _ in 0..repeats {
                let take = async |requests| {
                    let before = counts();
                    stack.round(server.url, requests).await;
                    let after = counts();
                    (after.0 - before.0, after.1 - before.1)
                };
                let one = take(n).await;
                let two = take(2 * n).await;
                let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
                measured.push((per(one.0, two.0), per(one.1, two.1)));
            }
            rows.push(measured);
            // The question afterwards is a connection of its own.
            opened += server.stats().0 - before - 1;
        }
    });
    println!(
        "allocations per request (counting allocator, client process; (2N - N) / N, N = {n}; median of {repeats} measurements each)"
    );
    println!(
        "{:<26} {:>8} {:>8} {:>7}   {:>9} {:>9} {:>7}   allocs in each measurement",
        "stack", "allocs", "vs reqw", "ratio", "bytes", "vs reqw", "ratio",
    );
    // The median measurement (by allocations) of each stack.
    let median = |measured: &[(f64, f64)]| {
        let mut sorted = measured.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        sorted[sorted.len() / 2]
    };
    let base = median(&rows[0]);
    for (name, measured) in STACKS.iter().zip(&rows) {
        let (allocs, bytes) = median(measured);
        let each: Vec<String> = measured.iter().map(|m| format!("{:.2}", m.0)).collect();
        println!(
            "{name:<26} {allocs:>8.2} {:>+8.2} {:>6.3}x   {bytes:>9.0} {:>+9.0} {:>6.3}x   {}",
            allocs - base.0,
            allocs / base.0,
            bytes - base.1,
            bytes / base.1,
            each.join(" "),
        );
    }
    println!("connections opened while counting: {opened}");
}
