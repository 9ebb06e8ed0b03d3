//! Compressed answers (reqwest's `gzip` and `deflate` features, forwarded): they are decoded
//! as they are read, and the policy's `body_limit` bounds the DECODED body, so a small
//! compressed answer that expands past it (a "zip bomb") is `BodyTooLarge` without the
//! expanded body ever being held in memory.
//!
//! This binary counts the bytes the process holds (a counting global allocator, hence a file
//! of its own), to check the last point on every path that reads a body inside the attempt.

// The counting allocator below is the only unsafe code: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use resilient_http::policy::EndpointPolicy;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};
use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes allocated now, and the most since the last `reset_peak`.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
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
            let now = NOW.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            NOW.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests that measure run one at a time (the test harness runs tests on threads).
static MEASURING: Mutex<()> = Mutex::const_new(());

/// The most bytes held above the start while `run` ran.
async fn peak_above_start<T>(run: impl Future<Output = T>) -> (T, usize) {
    let start = NOW.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = run.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

const MIB: usize = 1024 * 1024;

/// 64 MiB of zeros, gzipped (about 64 KiB), written in slices so that the 64 MiB never exist.
fn gzip_bomb() -> Result<Vec<u8>, BoxError> {
    let zeros = vec![0u8; 64 * 1024];
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    for _ in 0..1024 {
        encoder.write_all(&zeros)?;
    }
    Ok(encoder.finish()?)
}

fn gzip(body: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(body)?;
    Ok(encoder.finish()?)
}

fn zlib(body: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(body)?;
    Ok(encoder.finish()?)
}

fn client_with_limit(limit: u64) -> Result<Client, BoxError> {
    Ok(Client::builder()
        .default_policy(EndpointPolicy::new().body_limit(limit).max_attempts(1))
        .build()?)
}

#[tokio::test]
async fn a_gzip_answer_is_asked_for_and_decoded_on_every_read() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    let text = "a compressed answer, ".repeat(200);
    let reply = Reply::ok(gzip(text.as_bytes())?).header("content-encoding", "gzip");
    server.script("/g", [reply]);
    let client = Client::new()?;
    // Read inside the attempt, and after `send`.
    assert_eq!(client.get(server.url("/g")).text().await?, text);
    let response = client.get(server.url("/g")).send().await?;
    assert_eq!(response.text().await?, text);
    let asked = server.requests("/g");
    let accept = asked[0]
        .headers
        .get("accept-encoding")
        .ok_or("no Accept-Encoding sent")?;
    assert!(accept.to_str()?.contains("gzip"), "{accept:?}");
    Ok(())
}

#[tokio::test]
async fn a_deflate_answer_is_decoded() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    let text = "deflated ".repeat(100);
    let reply = Reply::ok(zlib(text.as_bytes())?).header("content-encoding", "deflate");
    server.script("/d", [reply]);
    let client = Client::new()?;
    assert_eq!(client.get(server.url("/d")).text().await?, text);
    Ok(())
}

/// The limit counts decoded bytes: an answer of 1.5 KiB compressed that decodes to 64 KiB is
/// over a 16 KiB limit, and one that decodes to 8 KiB is within it.
#[tokio::test]
async fn the_body_limit_counts_decoded_bytes() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    let big = gzip(&[b'a'; 64 * 1024])?;
    assert!(big.len() < 16 * 1024, "{}", big.len());
    server.script("/big", [Reply::ok(big).header("content-encoding", "gzip")]);
    let small = gzip(&[b'a'; 8 * 1024])?;
    server.script(
        "/small",
        [Reply::ok(small).header("content-encoding", "gzip")],
    );
    let client = client_with_limit(16 * 1024)?;
    let error = client.get(server.url("/big")).bytes().await.err();
    let error = error.ok_or("64 KiB decoded is over the 16 KiB limit")?;
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    assert_eq!(
        client.get(server.url("/small")).bytes().await?.len(),
        8 * 1024
    );
    Ok(())
}

/// 64 MiB of zeros in 64 KiB of gzip, against a 1 MiB limit: `BodyTooLarge` on each path that
/// reads inside the attempt, and the process never holds more than a few MiB more than before.
#[tokio::test]
async fn a_gzip_bomb_is_body_too_large_and_never_expanded_in_memory() -> Result<(), BoxError> {
    let bomb = gzip_bomb()?;
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
    let server = FaultServer::start().await?;
    server.script(
        "/bomb",
        [Reply::ok(bomb).header("content-encoding", "gzip")],
    );
    let client = client_with_limit(MIB as u64)?;
    let _one_at_a_time = MEASURING.lock().await;

    let (bytes, peak) = peak_above_start(client.get(server.url("/bomb")).bytes()).await;
    let error = bytes.err().ok_or("bytes(): the bomb was read whole")?;
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    assert!(peak < 8 * MIB, "bytes() held {peak} bytes at most");

    let (buffered, peak) = peak_above_start(client.get(server.url("/bomb")).send_buffered()).await;
    let error = buffered
        .err()
        .ok_or("send_buffered(): the bomb was read whole")?;
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    assert!(peak < 8 * MIB, "send_buffered() held {peak} bytes at most");

    // A reader of one's own gets a body limited to the decoded limit.
    let reading = client
        .get(server.url("/bomb"))
        .send_with(|response| async move { Ok(response.bytes().await?.len()) });
    let (read, peak) = peak_above_start(reading).await;
    let error = read.err().ok_or("send_with: the bomb was read whole")?;
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    assert!(peak < 8 * MIB, "send_with held {peak} bytes at most");
    Ok(())
}
