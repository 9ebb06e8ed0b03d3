//! HTTP/2 stream refusals and GOAWAY, from real HTTP/2 servers on loopback.
//!
//! reqwest retries these by itself unless told not to, unseen by the history. So each test
//! counts the streams the server received and compares them with the attempts we recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resilient_http::breaker::endpoint_key;
use resilient_http::middleware::ResilientMiddleware;
use resilient_http::retry::{
    FREE_RESENDS, IDEMPOTENCY_KEY, Jitter, MAX_RESENDS, RESEND_PAUSE, RetryHistory, RetryPolicy,
};
use resilient_http::{AttemptOutcome, Class, Client, Delivery, ErrorKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[path = "common/h2_script.rs"]
mod h2_script;
use h2_script::{H2Script, Step};

/// How many streams (requests) a server received, over all its connections.
type Seen = Arc<AtomicUsize>;

/// Serves HTTP/2 on `io`: the first `refused` streams of the server (`seen` counts them all)
/// are refused with REFUSED_STREAM, the others answered 200.
async fn serve_refusing<T>(io: T, refused: usize, seen: Seen)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((_request, mut respond))) = connection.accept().await {
        if seen.fetch_add(1, Ordering::SeqCst) < refused {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        } else {
            let response = http::Response::new(());
            respond.send_response(response, true).unwrap();
        }
    }
}

/// A prior-knowledge (cleartext) HTTP/2 server refusing the first `refused` streams.
async fn refusing_server(refused: usize) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_refusing(socket, refused, counter.clone()));
        }
    });
    (format!("http://{addr}/"), seen)
}

/// Answers the first stream with GOAWAY(INTERNAL_ERROR) naming it as processed.
async fn aborting_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(socket).await.unwrap();
        while let Some(Ok(_)) = connection.accept().await {
            connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
        }
    });
    format!("http://{addr}/")
}

/// Answers every stream's HEADERS with a graceful GOAWAY (NO_ERROR) whose last stream id is 0:
/// the server did not process the stream (RFC 9113 §6.8). Written frame by frame, because h2's
/// server has processed a stream by the time it hands it over.
async fn graceful_goaway_server() -> (String, Seen) {
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const HEADERS: u8 = 1;
    // Length 8, type GOAWAY, stream 0; last stream id 0, error code NO_ERROR.
    const GOAWAY: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = counter.clone();
            tokio::spawn(async move {
                let mut preface = [0; 24];
                socket.read_exact(&mut preface).await?;
                socket.write_all(&SETTINGS).await?;
                loop {
                    let mut head = [0; 9];
                    socket.read_exact(&mut head).await?;
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    socket.read_exact(&mut vec![0; len]).await?;
                    if head[3] == HEADERS {
                        seen.fetch_add(1, Ordering::SeqCst);
                        socket.write_all(&GOAWAY).await?;
                        break;
                    }
                }
                // Closing with the client's frames unread would reset the connection, maybe
                // before the client reads the GOAWAY: wait for it to close first.
                socket.shutdown().await?;
                socket.read_to_end(&mut Vec::new()).await?;
                std::io::Result::Ok(())
            });
        }
    });
    (format!("http://{addr}/"), seen)
}

/// A `reqwest::Client` of the user's speaking HTTP/2 over cleartext, with or without
/// reqwest's own retry.
fn prior_knowledge(reqwest_retries: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().http2_prior_knowledge();
    let builder = if reqwest_retries {
        builder
    } else {
        builder.retry(reqwest::retry::never())
    };
    builder.build().unwrap()
}

/// Three attempts, no delay between them: nothing here depends on time.
fn three_attempts() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff_base(Duration::ZERO)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

fn h2_client(http: reqwest::Client, retry: RetryPolicy) -> Client {
    Client::builder()
        .reqwest_client(http)
        .retry(retry)
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

const REFUSED: AttemptOutcome = AttemptOutcome::Error(ErrorKind::ConnectionClosed);

fn history(response: &reqwest::Response) -> Vec<(AttemptOutcome, Delivery)> {
    let RetryHistory(attempts) = response.extensions().get::<RetryHistory>().unwrap();
    attempts.iter().map(|a| (a.outcome, a.delivery)).collect()
}

fn resent(response: &reqwest::Response) -> Vec<bool> {
    let RetryHistory(attempts) = response.extensions().get::<RetryHistory>().unwrap();
    attempts.iter().map(|a| a.resent).collect()
}

/// Refused every time: resent `MAX_RESENDS` times at once, then the policy's one attempt
/// fails as any other.
#[tokio::test]
async fn refused_stream_is_transient_and_never_sent() {
    let (url, seen) = refusing_server(usize::MAX).await;
    let client = h2_client(prior_knowledge(false), RetryPolicy::never());
    let err = client.post(url).body("x").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.delivery(), Delivery::NotSent);
    let resent: Vec<bool> = err.attempts().iter().map(|a| a.resent).collect();
    let mut expected = vec![true; MAX_RESENDS as usize];
    expected.push(false);
    assert_eq!(resent, expected);
    assert_eq!(seen.load(Ordering::SeqCst), 1 + MAX_RESENDS as usize);
}

/// The first resend goes at once; each later one after a random pause of at most
/// `RESEND_PAUSE` (through the client and the middleware), so a call turned away again does
/// not join every turnover's herd at the same instant, and a server refusing every stream
/// gets the resends spread out.
#[tokio::test]
async fn later_resends_wait_a_random_pause_of_at_most_resend_pause() {
    for via in VIAS {
        let server = H2Script::start(vec![Step::Refuse; 1 + MAX_RESENDS as usize]).await;
        let builder = never_retries_unbudgeted();
        let err = h2_call(via, builder, http::Method::POST, None, &server.url)
            .await
            .unwrap_err();
        let pauses: Vec<Duration> = err.attempts().iter().map(|a| a.delay_before).collect();
        assert_eq!(pauses.len(), 1 + MAX_RESENDS as usize, "{via:?}");
        assert_eq!(server.seen(), 1 + MAX_RESENDS as usize, "{via:?}");
        // The first attempt and the first resend: at once.
        assert_eq!(pauses[..2], [Duration::ZERO; 2], "{via:?}");
        assert!(
            pauses[2..].iter().all(|p| *p <= RESEND_PAUSE),
            "{via:?}: {pauses:?}"
        );
        // Random: not one pause for all (30 draws from 0..2 ms).
        let distinct: std::collections::HashSet<_> = pauses[2..].iter().collect();
        assert!(distinct.len() > 10, "{via:?}: {pauses:?}");
    }
}

#[tokio::test]
async fn refused_streams_are_resent_by_us_even_for_post() {
    let (url, seen) = refusing_server(2).await;
    let client = h2_client(prior_knowledge(false), three_attempts());
    let response = client.post(&url).body("x").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let ok = AttemptOutcome::Status(http::StatusCode::OK);
    assert_eq!(
        history(&response),
        [
            (REFUSED, Delivery::NotSent),
            (REFUSED, Delivery::NotSent),
            (ok, Delivery::Delivered),
        ]
    );
    assert_eq!(resent(&response), [true, true, false]);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    // The breaker counted the answer only: a stream the server never processed is no
    // failure of the endpoint's.
    let breakers = client.breakers().unwrap();
    let url = url.parse().unwrap();
    let counts = breakers.get(&endpoint_key(&url)).unwrap().counts();
    assert_eq!((counts.calls, counts.failures), (1, 0));
}

/// What a `reqwest::Client` of the user's still does, as the README says: reqwest sends a
/// refused request twice more by itself (within each of our attempts and resends), and
/// `retry(reqwest::retry::never())` stops it.
#[tokio::test]
async fn a_reqwest_client_of_yours_keeps_reqwest_retries_until_turned_off() {
    let ours = 1 + MAX_RESENDS as usize;
    for (reqwest_retries, streams) in [(true, 3 * ours), (false, ours)] {
        let (url, seen) = refusing_server(usize::MAX).await;
        let client = h2_client(prior_knowledge(reqwest_retries), RetryPolicy::never());
        let err = client.get(url).send().await.unwrap_err();
        assert_eq!(err.attempts().len(), ours);
        assert_eq!(seen.load(Ordering::SeqCst), streams, "{reqwest_retries}");
    }
}

/// A graceful GOAWAY names the stream unprocessed, but hyper may hand it to a stream the
/// server kept (see `classify::Turnover`): maybe sent. A POST is neither resent nor retried; a
/// GET is resent, then retried by the policy.
#[tokio::test]
async fn a_graceful_goaway_may_have_been_processed_so_a_post_is_not_sent_again() {
    let (url, seen) = graceful_goaway_server().await;
    let client = h2_client(prior_knowledge(false), three_attempts());
    let err = client.post(&url).body("x").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    let resent: Vec<_> = err.attempts().iter().map(|a| a.resent).collect();
    assert_eq!(resent, [false]);
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    let resent: Vec<_> = err.attempts().iter().map(|a| a.resent).collect();
    // The resends first, then the policy's three attempts.
    let mut expected = vec![true; MAX_RESENDS as usize];
    expected.extend([false; 3]);
    assert_eq!(resent, expected);
    assert_eq!(seen.load(Ordering::SeqCst), 1 + 3 + MAX_RESENDS as usize);
}

#[tokio::test]
async fn goaway_is_transient_and_maybe_sent() {
    let url = aborting_server().await;
    let client = h2_client(prior_knowledge(false), RetryPolicy::never());
    let err = client.get(url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.delivery(), Delivery::MaybeSent);
}

// The client's own reqwest client speaks HTTP/2 only over TLS, negotiated by ALPN, and trusts
// only the platform's roots: its tests run in a child process told to trust a test CA.
#[cfg(any(feature = "default-tls", feature = "rustls", feature = "native-tls"))]
mod tls {
    use super::*;
    use tokio_rustls::rustls;

    const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/h2-test-ca.pem");

    /// True in the child process, which trusts the test CA (rustls reads `SSL_CERT_FILE` on
    /// Linux). The parent runs `test` there and checks it passed. Setting the variable in this
    /// process instead would race the other tests' threads reading the environment.
    fn trusting_test_ca(test: &str) -> bool {
        if std::env::var_os("SSL_CERT_FILE").is_some_and(|file| file == TEST_CA) {
            return true;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("SSL_CERT_FILE", TEST_CA)
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the test did not run: {stdout}"
        );
        false
    }

    /// An HTTP/2-only server over TLS for `127.0.0.1`, refusing the first `refused` streams.
    async fn tls_refusing_server(refused: usize) -> (String, Seen) {
        let cert = include_bytes!("data/h2-test-server.der");
        let key = include_bytes!("data/h2-test-server.key.der");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(&cert[..])],
                rustls::pki_types::PrivatePkcs8KeyDer::from(&key[..]).into(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(socket).await {
                        serve_refusing(tls, refused, seen).await;
                    }
                });
            }
        });
        (format!("https://{addr}/"), seen)
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// The client's own reqwest client retries nothing: the server saw exactly our attempt and
    /// our resends.
    #[test]
    #[cfg_attr(
        not(all(unix, not(target_vendor = "apple"))),
        ignore = "trusts the test CA through SSL_CERT_FILE, read on Linux and BSD only"
    )]
    fn our_reqwest_client_sends_a_refused_stream_once() {
        if !trusting_test_ca("tls::our_reqwest_client_sends_a_refused_stream_once") {
            return;
        }
        block_on(async {
            let (url, seen) = tls_refusing_server(usize::MAX).await;
            let client = Client::builder()
                .retry(RetryPolicy::never())
                .build()
                .unwrap();
            let err = client.post(url).body("x").send().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
            assert_eq!(err.class(), Class::Transient);
            assert_eq!(err.delivery(), Delivery::NotSent);
            // Our own resends only: each one stream.
            let ours = 1 + MAX_RESENDS as usize;
            assert_eq!(err.attempts().len(), ours);
            assert_eq!(seen.load(Ordering::SeqCst), ours);
        });
    }

    /// Refused streams are retried by our retry, so each is in the history (and the spans,
    /// metrics and breaker that follow it): three streams, three attempts.
    #[test]
    #[cfg_attr(
        not(all(unix, not(target_vendor = "apple"))),
        ignore = "trusts the test CA through SSL_CERT_FILE, read on Linux and BSD only"
    )]
    fn our_reqwest_client_leaves_refused_streams_to_our_retry() {
        if !trusting_test_ca("tls::our_reqwest_client_leaves_refused_streams_to_our_retry") {
            return;
        }
        block_on(async {
            let (url, seen) = tls_refusing_server(2).await;
            let client = Client::builder().retry(three_attempts()).build().unwrap();
            let response = client.post(url).body("x").send().await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            let ok = AttemptOutcome::Status(http::StatusCode::OK);
            assert_eq!(
                history(&response),
                [
                    (REFUSED, Delivery::NotSent),
                    (REFUSED, Delivery::NotSent),
                    (ok, Delivery::Delivered),
                ]
            );
            assert_eq!(resent(&response), [true, true, false]);
            assert_eq!(seen.load(Ordering::SeqCst), 3);
        });
    }
}

/// The two ways a call runs: the client's own call, and `ResilientMiddleware` over a
/// `reqwest_middleware` chain (the retry layer's driver).
#[derive(Clone, Copy, Debug)]
enum Via {
    Client,
    Middleware,
}

const VIAS: [Via; 2] = [Via::Client, Via::Middleware];

/// A policy that never retries, with a backoff that would show (10 s per retry) and a
/// retry budget with nothing in it: a resend spends none of them.
fn never_retries() -> resilient_http::ClientBuilder {
    use resilient_http::policy::EndpointPolicy;
    use resilient_http::retry::BudgetConfig;
    let retry = RetryPolicy::builder()
        .max_attempts(1)
        .backoff_base(Duration::from_secs(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    Client::builder()
        .retry(retry)
        .attempt_timeout(Duration::from_secs(5))
        .default_policy(EndpointPolicy::new().retry_budget(BudgetConfig::new(
            0.0,
            0,
            Duration::from_secs(1),
        )))
}

/// As [`never_retries`], without a retry budget: nothing pays for resends past
/// `FREE_RESENDS`, and none is needed.
fn never_retries_unbudgeted() -> resilient_http::ClientBuilder {
    use resilient_http::policy::EndpointPolicy;
    never_retries().default_policy(EndpointPolicy::new().retry_budget_enabled(false))
}

/// Sends `method` (with a bytes body for a POST) to `url` via `via`, with `builder`'s policy
/// over a prior-knowledge HTTP/2 reqwest client: the response's status and history, or the
/// error.
async fn h2_call(
    via: Via,
    builder: resilient_http::ClientBuilder,
    method: http::Method,
    key: Option<&str>,
    url: &str,
) -> Result<(u16, Vec<resilient_http::Attempt>), resilient_http::Error> {
    let history = |response: &reqwest::Response| {
        let attempts = response.extensions().get::<RetryHistory>();
        attempts
            .map(|RetryHistory(a)| a.clone())
            .unwrap_or_default()
    };
    let body = method == http::Method::POST;
    match via {
        Via::Client => {
            let client = builder
                .reqwest(|b| b.http2_prior_knowledge())
                .build()
                .unwrap();
            let mut request = client.request(method, url);
            if body {
                request = request.body("payload");
            }
            if let Some(key) = key {
                request = request.header(IDEMPOTENCY_KEY, key);
            }
            let response = request.send().await?;
            Ok((response.status().as_u16(), history(&response)))
        }
        Via::Middleware => {
            let middleware = ResilientMiddleware::new(builder).unwrap();
            let client = reqwest_middleware::ClientBuilder::new(prior_knowledge(false))
                .with(middleware)
                .build();
            let mut request = client.request(method, url);
            if body {
                request = request.body("payload");
            }
            if let Some(key) = key {
                request = request.header(IDEMPOTENCY_KEY, key);
            }
            match request.send().await {
                Ok(response) => Ok((response.status().as_u16(), history(&response))),
                Err(err) => match err {
                    reqwest_middleware::Error::Middleware(inner) => Err(inner
                        .downcast::<resilient_http::Error>()
                        .expect("a typed error")),
                    reqwest_middleware::Error::Reqwest(e) => panic!("untyped: {e}"),
                },
            }
        }
    }
}

/// Each attempt's outcome, delivery, whether it was resent, and whether it went at once or
/// after no more than a resend's pause (never the policy's backoff).
fn outline(attempts: &[resilient_http::Attempt]) -> Vec<(AttemptOutcome, Delivery, bool, bool)> {
    attempts
        .iter()
        .map(|a| {
            (
                a.outcome,
                a.delivery,
                a.resent,
                a.delay_before <= RESEND_PAUSE,
            )
        })
        .collect()
}

/// Graceful GOAWAYs naming the stream unprocessed and a REFUSED_STREAM, as a healthy server
/// turning its connections over gives them: the request goes out again at once, on a new
/// connection after each GOAWAY, under a policy that never retries, with a 10 s backoff and an
/// empty retry budget; the history shows each one. A POST is resent after a refusal (never
/// processed) and, with an `Idempotency-Key`, after a GOAWAY (maybe processed: see
/// `a_graceful_goaway_may_have_been_processed_so_a_post_is_not_sent_again`).
#[tokio::test]
async fn streams_the_server_never_processed_are_resent_at_once_spending_no_attempt() {
    use Step::{GoAway, Refuse};
    let going_away = (REFUSED, Delivery::MaybeSent, true, true);
    let refused = (REFUSED, Delivery::NotSent, true, true);
    let ok = AttemptOutcome::Status(http::StatusCode::OK);
    let answered = (ok, Delivery::Delivered, false, true);
    let cases = [
        (
            http::Method::GET,
            None,
            [GoAway, Refuse, GoAway],
            [going_away, refused, going_away],
            3,
        ),
        (
            http::Method::POST,
            None,
            [Refuse, Refuse, Refuse],
            [refused, refused, refused],
            1,
        ),
        (
            http::Method::POST,
            Some("order-1"),
            [GoAway, Refuse, GoAway],
            [going_away, refused, going_away],
            3,
        ),
    ];
    for via in VIAS {
        for (method, key, script, resent, connections) in cases.clone() {
            let server = H2Script::start(script.to_vec()).await;
            let started = tokio::time::Instant::now();
            let result = h2_call(via, never_retries(), method.clone(), key, &server.url).await;
            let what = format!("{via:?} {method} {key:?}");
            let (status, attempts) = result.unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(status, 200, "{what}");
            let mut expected = resent.to_vec();
            expected.push(answered);
            assert_eq!(outline(&attempts), expected, "{what}");
            assert_eq!(server.seen(), 4, "{what}");
            // Each GOAWAY closed its connection; a refusal leaves it open.
            assert_eq!(server.connections(), connections, "{what}");
            assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        }
    }
}

/// A POST without an `Idempotency-Key` after a graceful GOAWAY is not resent: the server may
/// have processed it (see `classify::Turnover`).
#[tokio::test]
async fn a_post_is_not_resent_after_a_graceful_goaway() {
    for via in VIAS {
        let server = H2Script::start(vec![Step::GoAway]).await;
        let err = h2_call(via, never_retries(), http::Method::POST, None, &server.url)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{via:?} {err:?}");
        assert_eq!(err.delivery(), Delivery::MaybeSent, "{via:?}");
        let resent: Vec<bool> = err.attempts().iter().map(|a| a.resent).collect();
        assert_eq!(resent, [false], "{via:?}");
        assert_eq!(server.seen(), 1, "{via:?}");
    }
}

/// Past `MAX_RESENDS`, a stream the server never processed is an attempt as any other: a
/// policy that never retries fails with it, after the resends.
#[tokio::test]
async fn resends_are_bounded_per_call() {
    for via in VIAS {
        let script = vec![Step::Refuse; 1 + MAX_RESENDS as usize];
        let server = H2Script::start(script).await;
        let builder = never_retries_unbudgeted();
        let err = h2_call(via, builder, http::Method::GET, None, &server.url)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{via:?} {err:?}");
        assert_eq!(err.delivery(), Delivery::NotSent, "{via:?}");
        let resent: Vec<bool> = err.attempts().iter().map(|a| a.resent).collect();
        let mut expected = vec![true; MAX_RESENDS as usize];
        expected.push(false);
        assert_eq!(resent, expected, "{via:?}");
        assert_eq!(server.seen(), 1 + MAX_RESENDS as usize, "{via:?}");
    }
}

/// Past `FREE_RESENDS`, a resend spends from the retry budget: with none in it, a server
/// refusing every stream gets `FREE_RESENDS` resends of a call, not `MAX_RESENDS`.
#[tokio::test]
async fn resends_past_the_free_ones_spend_the_retry_budget() {
    for via in VIAS {
        let script = vec![Step::Refuse; 1 + MAX_RESENDS as usize];
        let server = H2Script::start(script).await;
        let err = h2_call(via, never_retries(), http::Method::GET, None, &server.url)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{via:?} {err:?}");
        let resent: Vec<bool> = err.attempts().iter().map(|a| a.resent).collect();
        let mut expected = vec![true; FREE_RESENDS as usize];
        expected.push(false);
        assert_eq!(resent, expected, "{via:?}");
        assert_eq!(server.seen(), 1 + FREE_RESENDS as usize, "{via:?}");
    }
}

/// A GOAWAY that names the stream as kept, then a connection lost without its answer: the
/// server may have processed it, so it is never resent (a POST is not retried at all).
#[tokio::test]
async fn a_stream_the_server_kept_is_never_resent() {
    for via in VIAS {
        for method in [http::Method::GET, http::Method::POST] {
            let server = H2Script::start(vec![Step::GoAwayKept]).await;
            let err = h2_call(via, never_retries(), method.clone(), None, &server.url)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{via:?} {err:?}");
            assert_eq!(err.delivery(), Delivery::MaybeSent, "{via:?} {method}");
            let resent: Vec<bool> = err.attempts().iter().map(|a| a.resent).collect();
            assert_eq!(resent, [false], "{via:?} {method}");
            assert_eq!(server.seen(), 1, "{via:?} {method}");
        }
    }
}

/// A streaming body that was not kept cannot go out again: the refusal ends the call.
#[tokio::test]
async fn a_body_that_cannot_be_sent_again_is_not_resent() {
    let server = H2Script::start(vec![Step::Refuse]).await;
    let client = never_retries()
        .reqwest(|b| b.http2_prior_knowledge())
        .build()
        .unwrap();
    let stream = http_body_util::Full::new(bytes::Bytes::from_static(b"payload"));
    let err = client
        .post(&server.url)
        .body(reqwest::Body::wrap(stream))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    let resent: Vec<bool> = err.attempts().iter().map(|a| a.resent).collect();
    assert_eq!(resent, [false]);
    assert_eq!(server.seen(), 1);
}
