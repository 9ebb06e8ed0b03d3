//! `peers-allocs [N] [REPEATS] [STACK...]`: allocations and bytes allocated per call, for every
//! stack of `peers list` or the ones named (any stack `peers one` takes), and after each stack
//! the live heap (bytes allocated and not yet freed, by the whole process) beside the process's
//! resident memory (`VmRSS`): how much of what the process holds is heap in use.
//!
//! A counting global allocator (in this binary only, so that it costs the other figures
//! nothing) counts every allocation of the client process; the server is another process.
//! Each stack is warmed up, then makes N calls and 2N calls: (2N − N) / N is one measurement,
//! the per-round costs (64 task spawns) cancelling. Each stack is measured REPEATS times
//! (default 3): the median is the figure, and all of them show whether it is stable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use resilient_http_peers::{AnyStack, STACKS, Server, arg, block_on, is_stack, pin_to};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        LIVE.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        LIVE.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    // A growth counts as an allocation of the new size (it may move the block).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        LIVE.fetch_add(new_size as u64, Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Relaxed);
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
    let names: Vec<&str> = if args.len() > 3 {
        args[3..].iter().map(String::as_str).collect()
    } else {
        STACKS.to_vec()
    };
    if let Some(bad) = names.iter().find(|n| !is_stack(n)) {
        eprintln!("unknown stack {bad:?}: see `peers list`");
        std::process::exit(2);
    }
    let server = Server::start();
    pin_to(0);
    let all: Vec<AnyStack> = names.iter().map(|n| AnyStack::named(n)).collect();
    let mut memory = Vec::new();
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
            memory.push((LIVE.load(Relaxed), rss()));
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
    for (name, measured) in names.iter().zip(&rows) {
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
    println!("memory after each stack (the whole process: every stack before it included)");
    for (name, (live, rss)) in names.iter().zip(&memory) {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "{name:<26} live heap {:>8.1} MiB   rss {:>8.1} MiB   rss / live {:.2}",
            mib(*live),
            mib(*rss),
            *rss as f64 / *live as f64
        );
    }
}

/// The process's resident memory (`VmRSS`), in bytes; 0 where /proc is not.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
