//! Memory per endpoint (issue 28): the state a client keeps for each endpoint key it calls
//! (its breaker, with its call window, and its overload guards, with the retry budget's time
//! window) stays under 4 KiB whatever the core count. Shown with the windows' stripe count
//! forced to its maximum before any window is built: that of a 64-core machine (8 stripes,
//! the count from 4 cores up; before issue 28, 64 stripes from 32 cores up), and every
//! endpoint called from two threads, so that every window has made its stripes.
//!
//! This binary counts the bytes the process holds (a counting global allocator, hence a file
//! of its own, as `tests/compression.rs`).

// The counting allocator below is the only unsafe code: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use resilient_http::Client;
use resilient_http::testkit::{FaultServer, Reply};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes allocated now.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        NOW.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            NOW.fetch_add(new_size - layout.size(), Ordering::Relaxed);
        } else {
            NOW.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Every host name to the test server's address: distinct endpoint keys, one server.
struct Loopback(SocketAddr);

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addr = self.0;
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
            Ok(addrs)
        })
    }
}

const ENDPOINTS: usize = 1024;

#[tokio::test(flavor = "current_thread")]
async fn a_thousand_endpoints_hold_at_most_4_kib_each_at_64_cores() -> Result<(), BoxError> {
    // Before any window is built: the test binary's only test, so no other test built one.
    assert!(
        resilient_http::testkit::__assume_cores(64),
        "a window was built before the stripe count was forced"
    );

    let server = FaultServer::start().await?;
    server.script("/", [Reply::ok("ok")]);
    // Requests counted, not kept: their copies are the server's memory.
    server.count_only();
    let addr = server.addr();
    // No idle connection kept: the pool would hold one per host, which is reqwest's memory,
    // not the endpoints'.
    let client = Client::builder()
        .reqwest(move |builder| {
            builder
                .no_proxy()
                .pool_max_idle_per_host(0)
                .dns_resolver(Arc::new(Loopback(addr)))
        })
        .build()?;
    let url = move |i: usize| format!("http://k{i}.test:{}/", addr.port());
    // Whatever is made once per client or runtime, made before counting.
    for i in 0..4 {
        client.get(url(ENDPOINTS + i)).send().await?.bytes().await?;
    }
    let before = NOW.load(Ordering::Relaxed);
    for i in 0..ENDPOINTS {
        let body = client.get(url(i)).send().await?.bytes().await?;
        assert_eq!(&body[..], b"ok");
    }
    // Connections closing on the server's side free their buffers a little later.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let one_thread = NOW.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "{ENDPOINTS} endpoints called from one thread: {one_thread} bytes, {} per endpoint",
        one_thread / ENDPOINTS
    );
    // Each endpoint called from a second thread too: a window makes its stripes (all of
    // them, at the forced maximum) when a thread other than its first records into it.
    let other = client.clone();
    tokio::task::spawn_blocking(move || -> Result<(), BoxError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            for i in 0..ENDPOINTS {
                other.get(url(i)).send().await?.bytes().await?;
            }
            Ok(())
        })
    })
    .await??;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let added = NOW.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "{ENDPOINTS} endpoints: {added} bytes, {} per endpoint",
        added / ENDPOINTS
    );
    assert!(
        added <= 4 * 1024 * 1024,
        "{added} bytes for {ENDPOINTS} endpoints"
    );
    Ok(())
}
