use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::body::ReplyBody;
use super::reply::{Action, Reply};

/// A request the server received.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The path and query, e.g. `/search?q=x`.
    pub path_and_query: String,
    /// All request headers, as received.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

/// A function that decides each reply when its request arrives.
type Responder = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

#[derive(Default)]
struct Path {
    script: VecDeque<Reply>,
    /// Set by `respond_with`, in place of the script.
    responder: Option<Responder>,
    requests: Vec<RecordedRequest>,
    hits: usize,
}

#[derive(Default)]
struct State {
    paths: Mutex<HashMap<String, Path>>,
    /// Set by `respond_with_any`: for paths with neither a script nor a function.
    any: Mutex<Option<Responder>>,
    // Set by `count_only`: a benchmark's millions of requests are counted, not kept.
    count_only: AtomicBool,
}

/// Where a request's reply comes from.
enum Source {
    Reply(Reply),
    Responder(Responder),
}

impl State {
    fn with_path<T>(&self, path: &str, f: impl FnOnce(&mut Path) -> T) -> T {
        // A panicking test thread must not hide the recordings from the others.
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        f(paths.entry(path.to_owned()).or_default())
    }

    /// Records the request and picks the reply: the path's function, or its script in order
    /// (the last entry repeating), or the function for any path, or `200 ok`.
    fn record(&self, path: &str, request: RecordedRequest) -> Reply {
        let keep = !self.count_only.load(Relaxed);
        let source = self.with_path(path, |p| {
            p.hits += 1;
            if keep {
                p.requests.push(request.clone());
            }
            if let Some(responder) = &p.responder {
                return Some(Source::Responder(responder.clone()));
            }
            match p.script.len() {
                0 => None,
                1 => p.script.front().cloned().map(Source::Reply),
                _ => p.script.pop_front().map(Source::Reply),
            }
        });
        let source = source.or_else(|| {
            let any = self.any.lock().unwrap_or_else(PoisonError::into_inner);
            any.clone().map(Source::Responder)
        });
        // A function runs outside the locks: a slow one holds up only its own request.
        match source {
            Some(Source::Reply(reply)) => reply,
            Some(Source::Responder(responder)) => responder(&request),
            None => Reply::ok("ok"),
        }
    }
}

/// A loopback HTTP/1.1 server whose replies are scripted per path; see the
/// [module docs](super). It stops, dropping every connection, when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FaultServer {
    /// Starts a server on `127.0.0.1` with a port chosen by the kernel.
    pub async fn start() -> io::Result<FaultServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let task = tokio::spawn(accept(listener, state.clone()));
        Ok(FaultServer { addr, state, task })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`; `path` starts with `/` and may carry a query.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Replaces the script for `path` (without query): the replies are served in order, and
    /// the last one repeats for every further request.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        self.state.with_path(path, |p| {
            p.script = replies;
            p.responder = None;
        });
    }

    /// Answers every request to `path` (without query) with what `respond` returns when the
    /// request arrives, in place of a script: for a server whose answers depend on the
    /// request, on the time or on what came before (a model of a dependency, say). Requests
    /// are still counted and recorded. A later [`script`](Self::script) for `path` replaces
    /// the function. `respond` runs on the server's runtime for each request, concurrently
    /// with itself: keep it short and do not block (a panic in it drops that connection).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use resilient_http::testkit::{FaultServer, Reply};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = FaultServer::start().await?;
    /// // Every third request fails, whoever sends it.
    /// let seen = AtomicUsize::new(0);
    /// server.respond_with("/items", move |request| {
    ///     match seen.fetch_add(1, Ordering::Relaxed) % 3 {
    ///         2 => Reply::status(503),
    ///         _ => Reply::ok(format!("{} {}", request.method, request.path_and_query)),
    ///     }
    /// });
    /// let http = reqwest::Client::new();
    /// let statuses = [
    ///     http.get(server.url("/items?page=1")).send().await?.status(),
    ///     http.get(server.url("/items")).send().await?.status(),
    ///     http.get(server.url("/items")).send().await?.status(),
    /// ];
    /// assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 503]);
    /// assert_eq!(server.hits("/items"), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn respond_with(
        &self,
        path: &str,
        respond: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) {
        let responder: Responder = Arc::new(respond);
        self.state.with_path(path, |p| {
            p.responder = Some(responder);
            p.script.clear();
        });
    }

    /// Like [`respond_with`](Self::respond_with), for every path that has neither a script nor
    /// a function of its own (instead of `200 ok`). Requests are counted and recorded under
    /// their own paths.
    pub fn respond_with_any(
        &self,
        respond: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) {
        let responder: Responder = Arc::new(respond);
        let mut any = self
            .state
            .any
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *any = Some(responder);
    }

    /// How many requests reached `path`, including those that were reset or never answered.
    pub fn hits(&self, path: &str) -> usize {
        self.state.with_path(path, |p| p.hits)
    }

    /// The requests that reached `path`, oldest first (none since [`count_only`](Self::count_only)).
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.state.with_path(path, |p| p.requests.clone())
    }

    /// From now on, only counts requests ([`hits`](Self::hits)) instead of also keeping them:
    /// for load runs, where keeping every request would take gigabytes.
    pub fn count_only(&self) {
        self.state.count_only.store(true, Relaxed);
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// A port on `127.0.0.1` where connections are refused, kept reserved while this lives.
///
/// The socket is bound but never listens, so the kernel refuses connections to it; holding it
/// stops a parallel test's server from being given the same port (binding a port and closing it
/// again would race).
#[derive(Debug)]
pub struct ClosedPort {
    socket: socket2::Socket,
    addr: SocketAddr,
}

impl ClosedPort {
    /// Reserves a port nobody listens on.
    pub fn bind() -> io::Result<ClosedPort> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
        Ok(ClosedPort { socket, addr })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        let _reserved = &self.socket;
        format!("http://{}{}", self.addr, path)
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve(stream, state.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What a handler asks the connection task to do with the raw socket once hyper lets go.
enum Takeover {
    Reset,
    Close,
    Raw(Bytes),
    RawThenReset(Bytes),
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    // A second handle on the same socket, to reset, close or write raw bytes after hyper's
    // handle is gone.
    let Ok((stream, raw)) = split_handle(stream) else {
        return;
    };
    let (takeover_tx, mut takeover_rx) = mpsc::unbounded_channel();
    let service = service_fn(move |request| handle(request, state.clone(), takeover_tx.clone()));
    let mut connection = Box::pin(
        http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(stream), service),
    );
    tokio::select! {
        _ = &mut connection => {}
        Some(takeover) = takeover_rx.recv() => {
            drop(connection);
            // Best effort: the client sees whatever the kernel makes of it.
            let _ = take_over(raw, takeover);
        }
    }
}

fn split_handle(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let raw = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, raw))
}

fn take_over(mut raw: std::net::TcpStream, takeover: Takeover) -> io::Result<()> {
    match takeover {
        Takeover::Reset => {
            // Closing with a zero linger sends RST instead of FIN.
            socket2::SockRef::from(&raw).set_linger(Some(Duration::ZERO))?;
        }
        Takeover::Close => raw.shutdown(Shutdown::Both)?,
        Takeover::Raw(bytes) => {
            raw.set_nonblocking(false)?;
            raw.write_all(&bytes)?;
            raw.shutdown(Shutdown::Write)?;
        }
        Takeover::RawThenReset(bytes) => {
            raw.set_nonblocking(false)?;
            raw.write_all(&bytes)?;
            raw.flush()?;
            socket2::SockRef::from(&raw).set_linger(Some(Duration::ZERO))?;
        }
    }
    Ok(())
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
    takeover: mpsc::UnboundedSender<Takeover>,
) -> Result<Response<ReplyBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let recorded = RecordedRequest {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
    };
    let Reply {
        action,
        delay,
        body_delay,
        held,
    } = state.record(parts.uri.path(), recorded);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let takeover_action = match action {
        Action::Respond {
            status,
            headers,
            body,
        } => {
            let mut response = respond(status, &headers, body);
            let body = std::mem::replace(response.body_mut(), ReplyBody::full(Bytes::new()));
            *response.body_mut() = body.after(body_delay).holding(held);
            return Ok(response);
        }
        Action::StallBody { status, sent } => {
            let mut response = stall(status, sent);
            let body = std::mem::replace(response.body_mut(), ReplyBody::full(Bytes::new()));
            *response.body_mut() = body.holding(held);
            return Ok(response);
        }
        Action::Hang => None,
        Action::Reset => Some(Takeover::Reset),
        Action::Close => Some(Takeover::Close),
        Action::Raw(bytes) => Some(Takeover::Raw(bytes)),
        Action::RawThenReset(bytes) => Some(Takeover::RawThenReset(bytes)),
    };
    if let Some(action) = takeover_action {
        let _ = takeover.send(action);
    }
    // The held value lives as long as this future: until the connection is dropped.
    let _held = held;
    std::future::pending().await
}

fn respond(status: u16, headers: &[(String, String)], body: Bytes) -> Response<ReplyBody> {
    match build(status, headers) {
        Ok(mut response) => {
            *response.body_mut() = ReplyBody::full(body);
            response
        }
        Err(message) => {
            let mut response = Response::new(ReplyBody::full(Bytes::from(message)));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

fn build(status: u16, headers: &[(String, String)]) -> Result<Response<ReplyBody>, String> {
    let mut response = Response::new(ReplyBody::full(Bytes::new()));
    *response.status_mut() =
        StatusCode::from_u16(status).map_err(|_| format!("testkit: invalid status {status}"))?;
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("testkit: invalid header name {name:?}"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("testkit: invalid value for header {name}"))?;
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

fn stall(status: u16, sent: Bytes) -> Response<ReplyBody> {
    let announced = sent.len() + 1024;
    let mut response = respond(status, &[], Bytes::new());
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(announced));
    *response.body_mut() = ReplyBody::stalling(sent);
    response
}
