//! A cleartext (prior-knowledge) HTTP/2 server that follows a script, frame by frame: it
//! answers, refuses (`REFUSED_STREAM`) or shuts its connection down gracefully (`GOAWAY`
//! with `NO_ERROR`) naming the stream unprocessed or processed, as nginx does after
//! `keepalive_requests` and on a reload. Written on the wire because h2's own server has
//! processed a stream by the time it hands it over, and cannot name it unprocessed.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with a request (its HEADERS frame), in the order they arrive over
/// all connections; past the script's end, it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `200`, no body, once the request is whole.
    Answer,
    /// `RST_STREAM(REFUSED_STREAM)`: never processed (RFC 9113 §8.7).
    Refuse,
    /// `GOAWAY(NO_ERROR)` whose last stream id is below this stream (the stream before it on
    /// the connection, or 0), then the connection closes: never processed (RFC 9113 §6.8).
    GoAway,
    /// `GOAWAY(NO_ERROR)` naming this stream as the last one kept, then the connection closes
    /// without an answer: the server may have processed it.
    GoAwayKept,
}

/// The running server: its URL, and the HEADERS frames (requests) it received.
pub struct H2Script {
    pub url: String,
    seen: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl H2Script {
    pub async fn start(script: Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (counter, accepted) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, script, seen).await;
                });
            }
        });
        H2Script {
            url,
            seen,
            connections,
        }
    }

    /// How many requests (HEADERS frames) reached the server.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn goaway(last: u32) -> Vec<u8> {
    let mut payload = last.to_be_bytes().to_vec();
    payload.extend_from_slice(&0u32.to_be_bytes()); // NO_ERROR
    frame(GOAWAY, 0, 0, &payload)
}

/// `:status: 200` (HPACK static table entry 8), ending the stream.
fn ok(stream: u32) -> Vec<u8> {
    frame(HEADERS, 0x4 | END_STREAM, stream, &[0x88])
}

type Script = Arc<Mutex<std::vec::IntoIter<Step>>>;

async fn serve(
    mut socket: TcpStream,
    script: Script,
    seen: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut preface = [0; 24];
    socket.read_exact(&mut preface).await?;
    socket.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
    // The last stream answered on this connection: what a GOAWAY names as kept.
    let mut last_answered = 0;
    // Streams to answer once their request is whole.
    let mut answering: Vec<u32> = Vec::new();
    loop {
        let mut head = [0; 9];
        socket.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        socket.read_exact(&mut vec![0; len]).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                socket.write_all(&frame(SETTINGS, ACK, 0, &[])).await?;
            }
            HEADERS => {
                seen.fetch_add(1, Ordering::SeqCst);
                let step = script.lock().unwrap().next().unwrap_or(Step::Answer);
                match step {
                    Step::Answer => answering.push(stream),
                    Step::Refuse => {
                        let code = REFUSED_STREAM.to_be_bytes();
                        socket
                            .write_all(&frame(RST_STREAM, 0, stream, &code))
                            .await?;
                        continue;
                    }
                    Step::GoAway | Step::GoAwayKept => {
                        let last = if step == Step::GoAway {
                            last_answered
                        } else {
                            stream
                        };
                        socket.write_all(&goaway(last)).await?;
                        // Closing with the client's frames unread would reset the connection,
                        // maybe before the client reads the GOAWAY: wait for it to close first.
                        socket.shutdown().await?;
                        socket.read_to_end(&mut Vec::new()).await?;
                        return Ok(());
                    }
                }
            }
            DATA => {}
            _ => continue,
        }
        if flags & END_STREAM != 0 && answering.contains(&stream) {
            answering.retain(|s| *s != stream);
            socket.write_all(&ok(stream)).await?;
            last_answered = stream;
        }
    }
}
