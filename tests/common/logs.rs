//! What a test logs, kept: a `tracing` subscriber for the current thread that keeps every
//! line, for tests that check what was said and how often.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::fmt::format::{DefaultFields, Format};
use tracing_subscriber::fmt::{MakeWriter, Subscriber};

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;
    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

impl Lines {
    fn taken(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().map(str::to_owned).collect()
    }
}

/// tracing-core computes a callsite's interest from the global dispatcher alone while at
/// most one dispatcher is registered: a callsite first reached on another test thread while a
/// test's subscriber is the only one would be cached as never enabled, and its events lost.
/// A second dispatcher (which wants nothing), alive for the whole test binary, keeps the
/// interest computed from every dispatcher.
fn second_dispatcher() {
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}

fn subscriber(
    level: Level,
) -> (
    Subscriber<DefaultFields, Format, tracing::level_filters::LevelFilter, Lines>,
    Lines,
) {
    second_dispatcher();
    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(lines.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    (subscriber, lines)
}

/// Runs `f`, keeping what is logged on this thread at `level` or above: its output, and the
/// lines.
pub fn logged<T>(level: Level, f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let (subscriber, lines) = subscriber(level);
    let output = tracing::subscriber::with_default(subscriber, f);
    (output, lines.taken())
}

/// [`logged`] for a future, run on a current-thread runtime (where every poll is on this
/// thread).
pub async fn logged_async<F: Future>(level: Level, f: F) -> (F::Output, Vec<String>) {
    let (subscriber, lines) = subscriber(level);
    let _guard = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    (output, lines.taken())
}

/// What [`capture_globally`] keeps.
static GLOBAL: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Global;

impl std::io::Write for Global {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        GLOBAL.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps everything this test binary logs at `level` or above, on every thread (a fleet logs
/// from its own task), `log` records too (the redis crate's): the global subscriber, set by
/// the first call (later calls keep it). For tests that tell their lines apart by what they
/// hold (a fleet's prefix); [`captured`] reads them.
pub fn capture_globally(level: Level) {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Global)
        .with_ansi(false)
        .with_max_level(level)
        .try_init();
}

/// What [`capture_globally`] kept so far.
pub fn captured() -> String {
    String::from_utf8_lossy(&GLOBAL.lock().unwrap()).into_owned()
}
