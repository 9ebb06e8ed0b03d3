//! HTTP/2 stream refusals and GOAWAY, from a real h2 server on loopback.

use std::time::Duration;

use resilient_http::{Class, Client, Delivery, ErrorKind};
use tokio::net::TcpListener;

/// Serves one connection with prior-knowledge HTTP/2 and either refuses every stream or
/// answers the first with GOAWAY.
async fn h2_server(refuse: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(socket).await.unwrap();
        // hyper retries a refused stream by itself once, so refuse every stream.
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            if refuse {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
            } else {
                connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
            }
        }
    });
    format!("http://{addr}/")
}

fn h2_client() -> Client {
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    Client::builder()
        .reqwest_client(http)
        .retry(resilient_http::retry::RetryPolicy::never())
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn refused_stream_is_transient_and_never_sent() {
    let url = h2_server(true).await;
    let err = h2_client().post(url).body("x").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.delivery(), Delivery::NotSent);
}

#[tokio::test]
async fn goaway_is_transient_and_maybe_sent() {
    let url = h2_server(false).await;
    let err = h2_client().get(url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.delivery(), Delivery::MaybeSent);
}
