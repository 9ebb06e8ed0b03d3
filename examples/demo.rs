//! A tour of resilient-http against an embedded fault server on 127.0.0.1 (no network needed).
//!
//! Run it with `cargo run --example demo`.

use std::time::Duration;

use resilient_http::testkit::{FaultServer, Reply, closed_port_url};
use resilient_http::{Client, Error};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = FaultServer::start().await?;
    let client = Client::builder()
        .attempt_timeout(Duration::from_millis(500))
        .total_deadline(Duration::from_secs(5))
        .build()?;

    section("1. A transient failure: the server answers 503, 503, then 200");
    server.script(
        "/inventory",
        [
            Reply::status(503).retry_after_secs(1),
            Reply::status(503),
            Reply::ok("42 widgets"),
        ],
    );
    for _ in 0..3 {
        match client.get(server.url("/inventory")).send().await {
            Ok(response) => println!("ok: {}", response.text().await?),
            Err(err) => show(&err),
        }
    }
    println!("(the retry layer will turn these three calls into one)");

    section("2. A permanent failure: 404 comes back at once as a typed error");
    server.script("/orders/7", [Reply::status(404).body("no such order")]);
    match client.get(server.url("/orders/7")).send().await {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(mut err) => {
            show(&err);
            if let Some(response) = err.take_response() {
                println!("body kept for diagnostics: {:?}", response.text().await?);
            }
        }
    }

    section("3. Headers arrive, then the body stalls: the attempt timeout still fires");
    server.script("/report", [Reply::stall_body(200, "{\"rows\": [")]);
    let started = tokio::time::Instant::now();
    let response = client.get(server.url("/report")).send().await?;
    println!(
        "headers after {:.0?}: {}",
        started.elapsed(),
        response.status()
    );
    match response.bytes().await {
        Ok(body) => println!("unexpected body of {} bytes", body.len()),
        Err(body_error) => {
            println!("body read failed after {:.0?}", started.elapsed());
            show(&Error::from(body_error));
        }
    }

    section("4. Nobody listening: the request never reached the server");
    match client.get(closed_port_url("/health")?).send().await {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(err) => show(&err),
    }

    section("5. The server resets the connection after reading the request");
    server.script("/pay", [Reply::reset()]);
    match client
        .post(server.url("/pay"))
        .body("{\"amount\": 10}")
        .send()
        .await
    {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(err) => show(&err),
    }

    println!(
        "\nthe server saw: /inventory {}x, /orders/7 {}x, /report {}x, /pay {}x",
        server.hits("/inventory"),
        server.hits("/orders/7"),
        server.hits("/report"),
        server.hits("/pay"),
    );
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn show(err: &Error) {
    println!("error: {err}");
    println!(
        "  kind={:?} transient={} timeout={} connect={} delivery={} status={:?} retry_after={:?}",
        err.kind(),
        err.is_transient(),
        err.is_timeout(),
        err.is_connect(),
        err.delivery(),
        err.status().map(|s| s.as_u16()),
        err.retry_after(),
    );
    for attempt in err.attempts() {
        println!("  attempt {attempt}");
    }
}
