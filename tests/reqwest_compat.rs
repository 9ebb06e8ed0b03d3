//! reqwest's everyday call chains, each written once and compiled twice, unchanged: against
//! `reqwest::Client` and against `resilient_http::Client` (only the `use` line differs, as in
//! a user's migration). Each chain runs against a fault server of its own on both sides, and
//! must hand back the same value and make the server see the same requests (method, path and
//! query, headers, body), so a setter that compiled but meant something else (`json`, which
//! once read the answer here) fails the test.
//!
//! Needs reqwest's `json`, `query` and `form` features (`required-features` in Cargo.toml;
//! `cargo test --all-features` runs it).

use std::collections::HashMap;
use std::time::Duration;

use resilient_http::testkit::{FaultServer, RecordedRequest, Reply};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A JSON answer, as the chains' servers give it.
fn json_reply(body: &'static str) -> Reply {
    Reply::ok(body).header("content-type", "application/json")
}

#[derive(Debug, serde::Serialize)]
struct NewItem<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Item {
    id: u64,
    name: String,
}

#[derive(serde::Serialize)]
struct Search<'a> {
    q: &'a str,
    page: u32,
}

/// Each chain becomes a function in two modules, `with_reqwest` and `with_ours`, whose only
/// difference is what `Client` and `RequestBuilder` are, and a test that runs both.
macro_rules! chains {
    ($( $(#[$doc:meta])* async fn $name:ident($client:ident, $server:ident) -> $out:ty $body:block )*) => {
        mod with_reqwest {
            #![allow(unused_imports)]
            use super::*;
            use reqwest::{Client, RequestBuilder};
            $(
                pub async fn $name($client: &Client, $server: &FaultServer) -> Result<$out, BoxError> $body
            )*
        }

        mod with_ours {
            #![allow(unused_imports)]
            use super::*;
            use resilient_http::{Client, RequestBuilder};
            $(
                pub async fn $name($client: &Client, $server: &FaultServer) -> Result<$out, BoxError> $body
            )*
        }

        $(
            $(#[$doc])*
            #[tokio::test]
            async fn $name() -> Result<(), BoxError> {
                let (theirs, ours) = (FaultServer::start().await?, FaultServer::start().await?);
                let expected = with_reqwest::$name(&reqwest::Client::new(), &theirs).await?;
                let got = with_ours::$name(&resilient_http::Client::new()?, &ours).await?;
                assert_eq!(got, expected, "the value the chain handed back");
                same_requests(&theirs, &ours);
                Ok(())
            }
        )*
    };
}

/// The paths the chains call.
const PATHS: [&str; 3] = ["/items", "/search", "/login"];

/// One request as a server saw it: method, path and query, headers (sorted), body.
type Seen = (String, String, Vec<(String, String)>, Vec<u8>);

/// What a server saw, without what differs by server (the `host` header's port).
fn seen(server: &FaultServer) -> Vec<Seen> {
    PATHS
        .iter()
        .flat_map(|path| server.requests(path))
        .map(|r: RecordedRequest| {
            let mut headers: Vec<(String, String)> = r
                .headers
                .iter()
                .filter(|(name, _)| *name != http::header::HOST)
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.to_string(), value)
                })
                .collect();
            headers.sort();
            (
                r.method.to_string(),
                r.path_and_query,
                headers,
                r.body.to_vec(),
            )
        })
        .collect()
}

fn same_requests(theirs: &FaultServer, ours: &FaultServer) {
    let (theirs, ours) = (seen(theirs), seen(ours));
    assert!(!theirs.is_empty(), "the chain sent nothing");
    assert_eq!(ours, theirs, "what the server saw");
}

chains! {
    /// GET, the body as text.
    async fn get_text(client, server) -> String {
        server.script("/items", [Reply::ok("hello")]);
        let body = client.get(server.url("/items")).send().await?.text().await?;
        Ok(body)
    }

    /// GET, the answer decoded by the response's `json`.
    async fn get_json(client, server) -> Item {
        server.script("/items", [json_reply(r#"{"id":7,"name":"lamp"}"#)]);
        let item = client
            .get(server.url("/items"))
            .send()
            .await?
            .json::<Item>()
            .await?;
        Ok(item)
    }

    /// POST with a JSON body, status checked, answer decoded.
    async fn post_json(client, server) -> Item {
        server.script("/items", [json_reply(r#"{"id":8,"name":"desk"}"#)]);
        let created: Item = client
            .post(server.url("/items"))
            .json(&NewItem { name: "desk", tags: vec!["oak"] })
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(created)
    }

    /// A JSON body built with `serde_json::json!`.
    async fn post_json_value(client, server) -> u16 {
        let payload = serde_json::json!({ "name": "chair", "count": 4 });
        let response = client.post(server.url("/items")).json(&payload).send().await?;
        Ok(response.status().as_u16())
    }

    /// GET with query pairs.
    async fn get_query_pairs(client, server) -> String {
        let text = client
            .get(server.url("/search"))
            .query(&[("q", "rust http"), ("page", "2")])
            .send()
            .await?
            .text()
            .await?;
        Ok(text)
    }

    /// GET with a query struct, on a URL that already has a query.
    async fn get_query_struct(client, server) -> u16 {
        let response = client
            .get(server.url("/search?lang=en"))
            .query(&Search { q: "a&b", page: 3 })
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// POST a form of pairs.
    async fn post_form_pairs(client, server) -> String {
        let params = [("user", "ana"), ("password", "p@ss word")];
        let text = client
            .post(server.url("/login"))
            .form(&params)
            .send()
            .await?
            .text()
            .await?;
        Ok(text)
    }

    /// POST a form from a map.
    async fn post_form_map(client, server) -> u16 {
        let mut form = HashMap::new();
        form.insert("grant_type", "client_credentials");
        let response = client.post(server.url("/login")).form(&form).send().await?;
        Ok(response.status().as_u16())
    }

    /// Headers by name, by constant, and a whole map.
    async fn headers(client, server) -> u16 {
        let mut extra = reqwest::header::HeaderMap::new();
        extra.insert("x-tenant", reqwest::header::HeaderValue::from_static("acme"));
        let response = client
            .get(server.url("/items"))
            .header("x-api-key", "k-123")
            .header(reqwest::header::ACCEPT, "application/json")
            .headers(extra)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// Bearer authentication.
    async fn bearer_auth(client, server) -> u16 {
        let token = String::from("t0ken");
        let response = client.get(server.url("/items")).bearer_auth(&token).send().await?;
        Ok(response.status().as_u16())
    }

    /// Basic authentication, with and without a password.
    async fn basic_auth(client, server) -> (u16, u16) {
        let with = client
            .get(server.url("/login"))
            .basic_auth("ana", Some("secret"))
            .send()
            .await?;
        let without = client
            .get(server.url("/login"))
            .basic_auth("ana", None::<&str>)
            .send()
            .await?;
        Ok((with.status().as_u16(), without.status().as_u16()))
    }

    /// A per-request timeout.
    async fn timeout(client, server) -> String {
        let text = client
            .get(server.url("/items"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .text()
            .await?;
        Ok(text)
    }

    /// The HTTP version.
    async fn version(client, server) -> String {
        let response = client
            .get(server.url("/items"))
            .version(reqwest::Version::HTTP_11)
            .send()
            .await?;
        Ok(format!("{:?}", response.version()))
    }

    /// PUT a body of a string, PATCH one of bytes.
    async fn body(client, server) -> (u16, u16) {
        let put = client
            .put(server.url("/items"))
            .header("content-type", "text/plain")
            .body("a lamp")
            .send()
            .await?;
        let patch = client
            .patch(server.url("/items"))
            .body(vec![1u8, 2, 3])
            .send()
            .await?;
        Ok((put.status().as_u16(), patch.status().as_u16()))
    }

    /// `try_clone` a builder and send both.
    async fn try_clone(client, server) -> (String, String) {
        let builder = client.post(server.url("/items")).body("again");
        let copy = builder.try_clone().ok_or("a body of bytes clones")?;
        let first = builder.send().await?.text().await?;
        let second = copy.send().await?.text().await?;
        Ok((first, second))
    }

    /// `build`, change the request, `execute` it.
    async fn build_and_execute(client, server) -> String {
        let mut request = client.get(server.url("/items")).build()?;
        request
            .headers_mut()
            .insert("x-added", reqwest::header::HeaderValue::from_static("later"));
        let text = client.execute(request).await?.text().await?;
        Ok(text)
    }

    /// A request from its parts.
    async fn from_parts(client, server) -> u16 {
        let request = reqwest::Request::new(
            reqwest::Method::GET,
            reqwest::Url::parse(&server.url("/items"))?,
        );
        let response = RequestBuilder::from_parts(client.clone(), request)
            .header("x-from", "parts")
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// Any method, a parsed URL, the answer as bytes.
    async fn request_method_bytes(client, server) -> Vec<u8> {
        let url = reqwest::Url::parse(&server.url("/items"))?;
        let bytes = client
            .request(reqwest::Method::OPTIONS, url)
            .send()
            .await?
            .bytes()
            .await?;
        Ok(bytes.to_vec())
    }

    /// DELETE and HEAD, the status only.
    async fn delete_and_head(client, server) -> (bool, bool) {
        let deleted = client.delete(server.url("/items")).send().await?;
        let head = client.head(server.url("/items")).send().await?;
        Ok((deleted.status().is_success(), head.status().is_success()))
    }

    /// The response's headers and the body streamed chunk by chunk.
    async fn chunks(client, server) -> (Option<String>, usize) {
        server.script("/items", [Reply::ok(vec![b'x'; 100_000]).header("x-count", "1")]);
        let mut response = client.get(server.url("/items")).send().await?;
        let count = response
            .headers()
            .get("x-count")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut length = 0;
        while let Some(chunk) = response.chunk().await? {
            length += chunk.len();
        }
        Ok((count, length))
    }

    /// `error_for_status_ref`, then the body, then the URL.
    async fn error_for_status_ref(client, server) -> (String, String) {
        let response = client.get(server.url("/items")).send().await?;
        response.error_for_status_ref()?;
        let path = response.url().path().to_owned();
        Ok((path, response.text().await?))
    }

    /// A JSON body, then a content type of one's own (reqwest keeps the one set).
    async fn json_with_own_content_type(client, server) -> u16 {
        let response = client
            .post(server.url("/items"))
            .header(reqwest::header::CONTENT_TYPE, "application/merge-patch+json")
            .json(&serde_json::json!({ "name": null }))
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// Everything at once, as a real call to an API looks.
    async fn everything(client, server) -> Item {
        server.script("/search", [json_reply(r#"{"id":1,"name":"lamp"}"#)]);
        let found = client
            .post(server.url("/search"))
            .query(&[("dry_run", "false")])
            .bearer_auth("t0ken")
            .header("x-request-id", "r-1")
            .timeout(Duration::from_secs(10))
            .json(&NewItem { name: "lamp", tags: vec![] })
            .send()
            .await?
            .error_for_status()?
            .json::<Item>()
            .await?;
        Ok(found)
    }
}

/// reqwest's `Ok(404)` is an error here once the policy gives up on it, with the status on it:
/// the one difference a chain can meet, and `error_for_status` after it stays harmless.
#[tokio::test]
async fn a_failure_status_is_an_error_of_ours_and_ok_in_reqwest() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    server.script("/items", [Reply::status(404)]);
    let theirs = reqwest::Client::new()
        .get(server.url("/items"))
        .send()
        .await?;
    assert_eq!(theirs.status(), 404);
    let ours = resilient_http::Client::new()?
        .get(server.url("/items"))
        .send()
        .await;
    let error = ours.err().ok_or("a 404 is an error")?;
    assert_eq!(error.kind(), resilient_http::ErrorKind::Status);
    assert_eq!(error.status(), Some(http::StatusCode::NOT_FOUND));
    Ok(())
}

/// `recv_json` sends the request and reads the answer as JSON inside the attempt.
#[tokio::test]
async fn recv_json_reads_the_answer() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    server.script("/items", [json_reply(r#"{"id":3,"name":"rug"}"#)]);
    let client = resilient_http::Client::new()?;
    let item: Item = client
        .post(server.url("/items"))
        .json(&NewItem {
            name: "rug",
            tags: vec![],
        })
        .recv_json()
        .await?;
    assert_eq!(
        item,
        Item {
            id: 3,
            name: "rug".into()
        }
    );
    let sent = server.requests("/items");
    assert_eq!(&sent[0].body[..], br#"{"name":"rug","tags":[]}"#);
    Ok(())
}

/// `build` refuses what a `reqwest::Request` cannot carry, rather than dropping it.
#[tokio::test]
async fn build_refuses_the_overrides_a_request_cannot_carry() -> Result<(), BoxError> {
    let client = resilient_http::Client::new()?;
    let error = client
        .get("http://127.0.0.1:9/items")
        .no_retry()
        .build()
        .err()
        .ok_or("refused")?;
    assert_eq!(error.kind(), resilient_http::ErrorKind::InvalidRequest);
    assert!(error.to_string().contains("`.send()`"), "{error}");
    let bad = client.get("not a url").build().err().ok_or("refused")?;
    assert_eq!(bad.kind(), resilient_http::ErrorKind::InvalidRequest);
    Ok(())
}

/// A body that does not serialize fails the call before anything is sent, as in reqwest
/// (where `send` fails with a builder error).
#[tokio::test]
async fn a_body_that_does_not_serialize_is_an_invalid_request() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    let client = resilient_http::Client::new()?;
    // JSON object keys must be strings.
    let body = HashMap::from([((1, 2), "pair")]);
    let error = client
        .post(server.url("/items"))
        .json(&body)
        .send()
        .await
        .err()
        .ok_or("a map with tuple keys is not JSON")?;
    assert_eq!(
        error.kind(),
        resilient_http::ErrorKind::InvalidRequest,
        "{error}"
    );
    assert_eq!(server.hits("/items"), 0);
    Ok(())
}

/// A multipart form (feature `multipart`), sent as reqwest sends it (its boundary is random,
/// so the two clients' bodies are compared by their parts).
#[cfg(feature = "multipart")]
#[tokio::test]
async fn multipart() -> Result<(), BoxError> {
    let server = FaultServer::start().await?;
    let client = resilient_http::Client::new()?;
    let form = reqwest::multipart::Form::new().text("name", "lamp").part(
        "photo",
        reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.png"),
    );
    let response = client
        .post(server.url("/items"))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let sent = &server.requests("/items")[0];
    let content_type = sent
        .headers
        .get("content-type")
        .ok_or("no content type")?
        .to_str()?;
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let body = String::from_utf8_lossy(&sent.body);
    assert!(body.contains("name=\"name\"\r\n\r\nlamp\r\n"), "{body}");
    assert!(body.contains("filename=\"a.png\""), "{body}");
    Ok(())
}
