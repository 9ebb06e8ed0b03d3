//! Reloading a client's policies while it runs: when its policy file changes, or on SIGHUP.
//!
//! Run it with `cargo run --example reload`. It serves itself on 127.0.0.1 (no network),
//! writes a policy file, then rewrites it while calls go on.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use resilient_http::Client;
use resilient_http::testkit::{FaultServer, Reply};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = FaultServer::start().await?;
    let path = std::env::temp_dir().join(format!("reload-{}.toml", std::process::id()));
    std::fs::write(&path, "[default]\nmax_attempts = 1\n")?;
    let client = Client::builder().config_file(&path).build()?;
    let watcher = tokio::spawn(reload_on_change(client.clone(), path.clone()));

    server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
    let result = client.get(server.url("/flaky")).send().await;
    println!("attempts = 1: {}", describe(result));

    std::fs::write(&path, "[default]\nmax_attempts = 3\n")?;
    // The watcher looks every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
    let result = client.get(server.url("/flaky")).send().await;
    println!("attempts = 3: {}", describe(result));

    std::fs::write(&path, "[default]\natempts = 2\n")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
    let result = client.get(server.url("/flaky")).send().await;
    println!(
        "after a bad file, still max_attempts = 3: {}",
        describe(result)
    );

    watcher.abort();
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Reloads `client` from `path` whenever the file's modification time changes or the
/// process gets SIGHUP. A bad file is reported and changes nothing.
async fn reload_on_change(client: Client, path: PathBuf) {
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = modified(&path);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangups.as_mut() {
                Some(hangups) => hangups.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tick.tick() => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
            }
            _ = signalled => {}
        }
        match client.reload_file(&path) {
            Ok(()) => println!("  (reloaded {})", path.display()),
            Err(err) => println!("  (not reloaded: {err})"),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn describe(result: Result<reqwest::Response, resilient_http::Error>) -> String {
    match result {
        Ok(response) => format!("{}", response.status()),
        Err(err) => format!("error: {err}"),
    }
}
