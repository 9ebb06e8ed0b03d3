//! Request bodies that are streams, retried: a body made afresh for each attempt by a factory
//! (`RequestBuilder::body_with`), and a small stream kept as it is sent (the policy's
//! `replay_buffer`), through the client's own call and the reqwest-middleware adapter, against
//! the loopback fault server, which records every body it receives.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use resilient_http::hedge::HedgeConfig;
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{Jitter, RetryPolicy};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Class, Client, ClientBuilder, Error, ErrorKind};
use tokio::io::{AsyncRead, ReadBuf};

const KIB: usize = 1024;

/// No jitter, 100 ms × 2, `attempts` in all.
fn builder(attempts: u32) -> ClientBuilder {
    let retry = RetryPolicy::builder()
        .max_attempts(attempts)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    Client::builder().retry(retry)
}

/// `len` bytes that differ from one position to the next, so a chunk sent twice or out of
/// order shows.
fn content(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A stream of `content` in chunks of 1 KiB, as a file or a generator would be; of unknown
/// length (sent chunked), or saying its length (sent with `Content-Length`).
struct Chunks {
    chunks: VecDeque<Bytes>,
    len: Option<u64>,
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> SizeHint {
        self.len
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

fn chunks(content: &Bytes, len: Option<u64>) -> reqwest::Body {
    let chunks = content.chunks(KIB).map(|c| content.slice_ref(c));
    reqwest::Body::wrap(Chunks {
        chunks: chunks.collect(),
        len,
    })
}

/// `content` as a stream of unknown length.
fn stream(content: &Bytes) -> reqwest::Body {
    chunks(content, None)
}

/// A file streamed from disk in 16 KiB reads (what `Body::from(tokio::fs::File)` does with
/// reqwest's `stream` feature, which this crate does not turn on).
struct FileBody(tokio::fs::File);

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let mut buffer = vec![0; 16 * KIB];
        let mut read = ReadBuf::new(&mut buffer);
        match Pin::new(&mut self.0).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(read.filled());
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }
}

/// A file of `content` in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("rh-bodies-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The two ways a call runs.
#[derive(Clone, Copy, Debug)]
enum Via {
    Client,
    #[cfg(feature = "reqwest-middleware")]
    Middleware,
}

const VIAS: &[Via] = &[
    Via::Client,
    #[cfg(feature = "reqwest-middleware")]
    Via::Middleware,
];

/// PUTs `body` to `url` with a client of `via`'s kind built from `builder`.
async fn put(
    via: Via,
    builder: ClientBuilder,
    url: &str,
    body: reqwest::Body,
) -> Result<(), Error> {
    match via {
        Via::Client => {
            builder.build()?.put(url).body(body).send().await?;
        }
        #[cfg(feature = "reqwest-middleware")]
        Via::Middleware => {
            let resilience = resilient_http::middleware::ResilientMiddleware::new(builder)?;
            let http = reqwest::Client::builder()
                .retry(reqwest::retry::never())
                .build()
                .unwrap();
            let client = reqwest_middleware::ClientBuilder::new(http)
                .with(resilience)
                .build();
            match client.put(url).body(body).send().await {
                Ok(_) => {}
                Err(reqwest_middleware::Error::Middleware(err)) => {
                    return Err(err.downcast::<Error>().expect("a typed error"));
                }
                Err(reqwest_middleware::Error::Reqwest(err)) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

/// The bodies `server` received at `path`, in order.
fn bodies(server: &FaultServer, path: &str) -> Vec<Bytes> {
    server.requests(path).into_iter().map(|r| r.body).collect()
}

#[tokio::test(start_paused = true)]
async fn a_file_body_made_per_attempt_is_sent_whole_by_every_retry() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/upload",
        [Reply::status(503), Reply::reset(), Reply::ok("stored")],
    );
    // Far above the replay buffer: only the factory can retry it.
    let data = content(300 * KIB);
    let file = TempFile::new("upload", &data);
    let (path, calls) = (file.0.clone(), Arc::new(AtomicUsize::new(0)));
    let counted = calls.clone();
    let response = builder(3)
        .build()
        .unwrap()
        .put(server.url("/upload"))
        .body("replaced by the factory's")
        .body_with(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            let path = path.clone();
            async move {
                let file = tokio::fs::File::open(path).await?;
                Ok::<_, std::io::Error>(reqwest::Body::wrap(FileBody(file)))
            }
        })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::Relaxed), 3, "one body per attempt");
    let sent = bodies(&server, "/upload");
    assert_eq!(sent.len(), 3);
    for (i, body) in sent.iter().enumerate() {
        assert!(body == &data, "attempt {} sent {} bytes", i + 1, body.len());
    }
}

#[tokio::test(start_paused = true)]
async fn a_factory_error_is_typed_names_the_request_and_is_not_retried() {
    let server = FaultServer::start().await.unwrap();
    server.script("/upload", [Reply::status(503), Reply::ok("stored")]);
    let url = server
        .url("/upload")
        .replace("http://", "http://user:hunter2@");
    let client = builder(3).build().unwrap();

    // The first attempt's body cannot be made: nothing is sent.
    let missing = std::env::temp_dir().join("rh-bodies-does-not-exist");
    let err = client
        .put(&url)
        .body_with(move || {
            let missing = missing.clone();
            async move {
                let file = tokio::fs::File::open(missing).await?;
                Ok::<_, std::io::Error>(reqwest::Body::wrap(FileBody(file)))
            }
        })
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Hook);
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(server.hits("/upload"), 0);
    let shown = err.to_string();
    assert!(shown.starts_with("PUT http://"), "{shown}");
    assert!(shown.contains("/upload"), "{shown}");
    assert!(shown.contains("body factory failed"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!format!("{err:?}").contains("hunter2"));
    let io = err
        .unredacted_source()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the factory's own error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    // A factory that fails at the second attempt ends the call there, after the 503.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let err = client
        .put(&url)
        .body_with(move || {
            let first = counted.fetch_add(1, Ordering::Relaxed) == 0;
            async move {
                match first {
                    true => Ok(reqwest::Body::from("first")),
                    false => Err("the upload source is gone"),
                }
            }
        })
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Hook);
    assert_eq!(err.attempts().len(), 2);
    assert_eq!(server.hits("/upload"), 1);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert!(
        err.to_string().contains("the upload source is gone"),
        "{err}"
    );

    // A panic in the factory is an error too, and the client stays usable.
    let err = client
        .put(&url)
        .body_with(
            || -> std::future::Ready<Result<reqwest::Body, std::io::Error>> {
                panic!("no body today")
            },
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Hook);
    assert!(err.to_string().contains("no body today"), "{err}");
    assert_eq!(server.hits("/upload"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_with_a_body_factory_sends_no_hedges() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [Reply::ok("late").delay(Duration::from_millis(200))],
    );
    let hedged = EndpointPolicy::new().hedge(HedgeConfig::new(Duration::from_millis(50), 2));
    let response = builder(3)
        .default_policy(hedged)
        .build()
        .unwrap()
        .put(server.url("/slow"))
        .body_with(|| async { Ok::<_, std::io::Error>(reqwest::Body::from("made")) })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(bodies(&server, "/slow"), ["made"]);
}

#[tokio::test(start_paused = true)]
async fn a_small_stream_is_kept_and_retried_with_the_same_bytes() {
    let data = content(10 * KIB);
    // Sent chunked, and with a `Content-Length` (hyper stops reading such a stream at its
    // length, without waiting for its end).
    for len in [None, Some(data.len() as u64)] {
        for &via in VIAS {
            let server = FaultServer::start().await.unwrap();
            server.script(
                "/upload",
                [Reply::reset(), Reply::status(503), Reply::ok("stored")],
            );
            put(via, builder(3), &server.url("/upload"), chunks(&data, len))
                .await
                .unwrap_or_else(|err| panic!("{via:?} {len:?}: {err}"));
            let requests = server.requests("/upload");
            assert_eq!(requests.len(), 3, "{via:?} {len:?}");
            assert!(requests.iter().all(|r| r.body == data), "{via:?} {len:?}");
            let first_length = requests[0].headers.get("content-length");
            assert_eq!(first_length.is_some(), len.is_some(), "{via:?} {len:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_longer_than_the_replay_buffer_gets_one_attempt() {
    for &via in VIAS {
        let server = FaultServer::start().await.unwrap();
        server.script("/upload", [Reply::status(503), Reply::ok("stored")]);
        let data = content(1024 * KIB);
        let err = put(via, builder(3), &server.url("/upload"), stream(&data))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyNotReplayable, "{via:?}: {err}");
        assert_eq!(err.attempts().len(), 1, "{via:?}");
        let sent = bodies(&server, "/upload");
        assert_eq!(sent.len(), 1, "{via:?}");
        assert!(sent[0] == data, "{via:?}: the one attempt sent it whole");

        // Just within a buffer set for the endpoint, the same stream is retried.
        server.script("/upload", [Reply::status(503), Reply::ok("stored")]);
        let larger = EndpointPolicy::new().replay_buffer(1024 * 1024);
        put(
            via,
            builder(3).default_policy(larger),
            &server.url("/upload"),
            stream(&data),
        )
        .await
        .unwrap_or_else(|err| panic!("{via:?}: {err}"));
        assert_eq!(bodies(&server, "/upload").len(), 3, "{via:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_replay_buffer_of_zero_keeps_one_attempt_for_any_stream() {
    for &via in VIAS {
        let server = FaultServer::start().await.unwrap();
        server.script("/upload", [Reply::status(503), Reply::ok("stored")]);
        let off = EndpointPolicy::new().replay_buffer(0);
        let data = content(KIB);
        let err = put(
            via,
            builder(3).default_policy(off),
            &server.url("/upload"),
            stream(&data),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyNotReplayable, "{via:?}: {err}");
        assert_eq!(server.hits("/upload"), 1, "{via:?}");
    }
}

#[test]
fn the_replay_buffer_is_range_checked_by_the_builders() {
    let too_large = EndpointPolicy::new().replay_buffer(16 * 1024 * 1024 + 1);
    let err = Client::builder()
        .default_policy(too_large)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(
        err.to_string()
            .contains("replay_buffer must be at least 0 and at most 16777216"),
        "{err}"
    );
    let err = RetryPolicy::builder()
        .replay_buffer(u64::MAX)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("replay_buffer"), "{err}");
    let largest = EndpointPolicy::new().replay_buffer(16 * 1024 * 1024);
    Client::builder().default_policy(largest).build().unwrap();
}

#[cfg(feature = "config")]
#[tokio::test(start_paused = true)]
async fn the_file_key_sets_the_replay_buffer_and_is_range_checked() {
    let server = FaultServer::start().await.unwrap();
    server.script("/small", [Reply::status(503), Reply::ok("stored")]);
    server.script("/off", [Reply::status(503), Reply::ok("stored")]);
    let file = "[default]\nreplay_buffer = 0\n\n\
                [[endpoint]]\nname = \"small\"\nmatch = { path = \"/small\" }\nreplay_buffer = 2048\n";
    let client = builder(3).config_toml(file).build().unwrap();
    let data = content(KIB);
    client
        .put(server.url("/small"))
        .body(stream(&data))
        .send()
        .await
        .unwrap();
    assert_eq!(server.hits("/small"), 2);
    let err = client
        .put(server.url("/off"))
        .body(stream(&data))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyNotReplayable);
    assert_eq!(server.hits("/off"), 1);

    for (text, expected) in [
        (
            "[default]\nreplay_buffer = 16777217\n",
            "<config_toml>:2: \"replay_buffer\": must be at least 0 and at most 16777216, got 16777217",
        ),
        (
            "[[endpoint]]\nname = \"x\"\nreplay_buffer = -1\n",
            "<config_toml>:3: \"replay_buffer\": must be at least 0",
        ),
    ] {
        let err = Client::builder().config_toml(text).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(expected), "{err}");
    }
}

/// Issue 24, item 10: a body read after `send()` is bounded by the attempt's time, which
/// surprises users of tower's timeouts (they stop at the head); the error says so, and how to
/// give a download more time.
#[tokio::test(start_paused = true)]
async fn a_body_read_after_send_that_runs_out_of_time_says_how_to_give_it_more() {
    let server = FaultServer::start().await.unwrap();
    server.script("/export", [Reply::stall_body(200, "id,name\n1,lamp\n")]);
    let client = Client::builder()
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let response = client.get(server.url("/export")).send().await.unwrap();
    let error = Error::from(response.bytes().await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::AttemptTimeout, "{error}");
    let message = error.to_string();
    for said in [
        "body",
        "attempt timeout",
        ".attempt_timeout(..)",
        "send_with",
    ] {
        assert!(message.contains(said), "{said:?} not in {message}");
    }
    // The same from a chunk at a time.
    let mut response = client.get(server.url("/export")).send().await.unwrap();
    let mut failed = None;
    while failed.is_none() {
        match response.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => failed = Some(Error::from(error)),
        }
    }
    let error = failed.unwrap();
    assert!(
        error.to_string().contains(".attempt_timeout(..)"),
        "{error}"
    );
}

/// Issue 24, item 10: a reader's body is read inside the attempt, so its timeout is retried
/// and its error does not send the caller to read it inside the attempt.
#[tokio::test(start_paused = true)]
async fn a_readers_body_that_runs_out_of_time_is_not_told_to_read_inside_the_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script("/export", [Reply::stall_body(200, "id,name\n")]);
    let client = builder(2)
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client
        .get(server.url("/export"))
        .send_with(|response| async move { Ok(response.bytes().await?) })
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(server.hits("/export"), 2, "retried");
    assert!(!error.to_string().contains("send_with"), "{error}");
}

/// A request's own attempt timeout replaces the policy's, longer too: one slow download gets
/// the time the policy's other calls do not.
#[tokio::test(start_paused = true)]
async fn a_requests_attempt_timeout_gives_it_longer_than_the_policys() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [Reply::ok("done").delay(Duration::from_millis(500))],
    );
    let client = builder(1)
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.get(server.url("/slow")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AttemptTimeout, "{error}");
    assert_eq!(error.timeout(), Some(Duration::from_millis(200)));
    let body = client
        .get(server.url("/slow"))
        .attempt_timeout(Duration::from_secs(1))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "done");
    // Shorter too; zero is refused.
    let error = client
        .get(server.url("/slow"))
        .attempt_timeout(Duration::from_millis(50))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.timeout(), Some(Duration::from_millis(50)), "{error}");
    let error = client
        .get(server.url("/slow"))
        .attempt_timeout(Duration::ZERO)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
}
