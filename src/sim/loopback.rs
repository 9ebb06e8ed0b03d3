//! The same scenario in real time, against the same model served by the testkit's fault
//! server on loopback: what the faithfulness test compares the simulation with.
//!
//! The simulation's claim is that an in-memory attempt sender on a paused clock changes
//! nothing the policy would see. This run takes both away: the replicas' real
//! [`Client`](crate::Client)s send real HTTP/1.1 over real sockets, in real time, to a
//! [`FaultServer`] on `127.0.0.1` whose [`respond_with_any`](FaultServer::respond_with_any)
//! function asks the very same [`Dependency`] what to answer each request when it arrives.
//! The load, the recording and the report are the runner's, unchanged; only the way the
//! attempts travel and the clock differ. Where the two reports disagree beyond chance, the
//! simulation is wrong.
//!
//! The server runs on a runtime of its own, on a thread of its own: the runner blocks its
//! caller's thread on its own runtime, and the server must keep answering meanwhile.
//!
//! How each [`ModelReply`] is served, and where loopback cannot be the model exactly:
//! - `Answer`: the status and headers after `head_after` ([`Reply::delay`]), then a short body
//!   `body_after` later ([`Reply::body_after`]).
//! - `Reset { after }`: a TCP reset after `after`, without an answer ([`Reply::reset`]).
//! - `Refused`: a TCP reset at once. A request that reached the server cannot be refused any
//!   more (refusal happens at connect, and reqwest reuses connections), and a reset is what
//!   the kernel answers a refused connection with: immediate, no answer, a transport failure
//!   the breaker counts. The difference: the client sees a reset after sending
//!   (`Delivery::MaybeSent`), not a refusal (`NotSent`), so a request that is not idempotent
//!   is not retried here where the simulation retries it.
//! - `Hang`: no answer, the connection kept open ([`Reply::hang`]) until the client gives up.
//!
//! Approximations, small against a sample step and a breaker's timers:
//! - The [`InFlight`](super::dependency::InFlight) guard is held by the reply
//!   ([`Reply::hold`]) until its body is written or its connection closes: it ends when the
//!   server has written the last byte, a loopback hop (tens of µs) before the client reads it,
//!   and a hung request's guard ends when the server notices the client closed its connection.
//! - Time: the model's clock is the dependency's, started by the runner once its clients are
//!   built, a moment before its own (the same instant, up to a few µs); tokio's timers round
//!   delays up to the millisecond; each attempt adds a loopback round trip and the server's
//!   and the client's scheduling delays, milliseconds in a debug build on a loaded machine.
//!   Most outcomes move smoothly with them (an attempt timeout meets a few more answers);
//!   some turn on them: in a quota squeeze, whether a request meets a spent window, and the
//!   faithfulness test's squeeze agrees only on an idle machine.
//! - Randomness: the model draws in the order requests arrive, which real time reorders, so
//!   the two runs see different draws of the same distributions: compare them statistically.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Simulation;
use super::dependency::{Dependency, ModelReply};
use super::report::Report;
use super::runner::{self, Way};
use crate::error::Error;
use crate::testkit::{FaultServer, Reply};

/// The body of every answer: short, so that it travels in the head's segment.
const BODY: &str = "sim";

/// Runs `simulation` in real time against its dependency served on loopback.
pub(crate) fn run(simulation: &Simulation) -> Result<Report, Error> {
    let dependency = Arc::new(Dependency::new(simulation.scenario()));
    let server = Server::start(dependency.clone())?;
    let report = runner::run_with(simulation, dependency, Way::Loopback(server.addr));
    server.stop();
    report
}

/// The fault server on its own thread and runtime.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts serving `dependency` (on its clock: the runner starts it once its clients are
    /// built).
    fn start(dependency: Arc<Dependency>) -> Result<Server, Error> {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("sim-loopback".to_owned())
            .spawn(move || serve(dependency, addr_tx, stopped))
            .map_err(|e| failed(&e))?;
        let addr = match addr_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => return Err(failed(&e)),
            Err(_) => return Err(failed(&"its thread ended before it listened")),
        };
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the server and waits for its thread.
    fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut();
    }
}

fn failed(why: &dyn std::fmt::Display) -> Error {
    Error::invalid_config(format!(
        "simulate on loopback: could not start the fault server: {why}"
    ))
}

/// The server thread: a runtime, the server answering from `dependency`, until `stopped`.
fn serve(
    dependency: Arc<Dependency>,
    addr_tx: mpsc::Sender<std::io::Result<std::net::SocketAddr>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let server = match FaultServer::start().await {
            Ok(server) => server,
            Err(e) => {
                let _ = addr_tx.send(Err(e));
                return;
            }
        };
        // The model decides every path: the request mix's paths all reach it.
        server.count_only();
        server.respond_with_any(move |_request| {
            let (reply, in_flight) = dependency.answer(dependency.since_start());
            to_reply(reply).hold(in_flight)
        });
        let _ = addr_tx.send(Ok(server.addr()));
        // Stopped, or the runner's side gone: either way the run is over.
        let _ = stopped.await;
        drop(server);
    });
}

/// What the fault server does for the model's `reply`.
fn to_reply(reply: ModelReply) -> Reply {
    match reply {
        ModelReply::Answer {
            status,
            headers,
            head_after,
            body_after,
        } => headers
            .into_iter()
            .fold(Reply::status(status).body(BODY), |reply, (name, value)| {
                reply.header(name, value)
            })
            .delay(head_after)
            .body_after(body_after),
        ModelReply::Reset { after } => Reply::reset().delay(after),
        ModelReply::Refused => Reply::reset().delay(Duration::ZERO),
        ModelReply::Hang => Reply::hang(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_model_s_replies_map_onto_the_testkit_s() {
        let answer = to_reply(ModelReply::Answer {
            status: 429,
            headers: vec![("retry-after", "3".to_owned())],
            head_after: Duration::from_millis(20),
            body_after: Duration::from_millis(5),
        });
        let shown = format!("{answer:?}");
        assert!(shown.contains("status: 429"), "{shown}");
        assert!(shown.contains("retry-after"), "{shown}");
        assert!(shown.contains("delay: 20ms"), "{shown}");
        assert!(shown.contains("body_delay: 5ms"), "{shown}");
        let reset = format!(
            "{:?}",
            to_reply(ModelReply::Reset {
                after: Duration::from_millis(7)
            })
        );
        assert!(
            reset.contains("Reset") && reset.contains("delay: 7ms"),
            "{reset}"
        );
        let refused = format!("{:?}", to_reply(ModelReply::Refused));
        assert!(
            refused.contains("Reset") && refused.contains("delay: 0ns"),
            "{refused}"
        );
        assert!(format!("{:?}", to_reply(ModelReply::Hang)).contains("Hang"));
    }
}
