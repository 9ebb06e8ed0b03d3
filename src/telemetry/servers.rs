//! The opt-in `server.address` and `server.port` labels of a policy's request and attempt
//! metrics (its `metrics_server_address`), bounded as the breaker labels are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use metrics::SharedString;
use url::Url;

use super::OTHER_METHOD as OTHER;

/// One server's two labels (shared: a call holds them by one pointer).
#[derive(Clone, Debug)]
pub(crate) struct ServerLabels {
    pub(super) address: SharedString,
    pub(super) port: SharedString,
}

/// The servers of one policy with labels of their own: the first `max` it meets, for its
/// life. A recorder keeps every series it was given (the `metrics` facade cannot delete one),
/// so a policy that calls ever new hosts (webhooks) would otherwise grow them without end;
/// servers past `max` share `_OTHER`. Read on every call without a lock (a snapshot behind an
/// `ArcSwap`, as `keyed.rs` keeps endpoints); a new server copies it under the writers' mutex,
/// at most `max` times.
#[derive(Debug)]
pub(crate) struct ServerSeries {
    max: usize,
    given: ArcSwap<Given>,
    writer: Mutex<()>,
    /// The labels of the servers without their own: `_OTHER`, both.
    other: Arc<ServerLabels>,
}

#[derive(Clone, Debug, Default)]
struct Given {
    /// By host, then port (one, nearly always): looked up by `&str`, with no allocation.
    hosts: HashMap<Arc<str>, Ports, foldhash::fast::RandomState>,
    len: usize,
}

/// One host's ports with labels, and theirs.
type Ports = Vec<(Option<u16>, Arc<ServerLabels>)>;

impl Given {
    fn find(&self, host: &str, port: Option<u16>) -> Option<Arc<ServerLabels>> {
        let ports = self.hosts.get(host)?;
        ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, labels)| labels.clone())
    }
}

impl ServerSeries {
    /// Labels for at most `max` servers (the policy's `max_breakers`).
    pub(crate) fn new(max: usize) -> Self {
        ServerSeries {
            max,
            given: ArcSwap::default(),
            writer: Mutex::new(()),
            other: Arc::new(ServerLabels {
                address: SharedString::const_str(OTHER),
                port: SharedString::const_str(OTHER),
            }),
        }
    }

    /// The labels of requests to `url`: its server's own, or `_OTHER` once `max` servers
    /// have theirs.
    pub(crate) fn labels(&self, url: &Url) -> Arc<ServerLabels> {
        let host = url.host_str().unwrap_or("");
        let port = url.port_or_known_default();
        let given = self.given.load();
        if let Some(labels) = given.find(host, port) {
            return labels;
        }
        if given.len >= self.max {
            return self.other.clone();
        }
        drop(given);
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Another call may have given it labels, or taken the last place, meanwhile.
        let mut given = Given::clone(&self.given.load());
        if let Some(labels) = given.find(host, port) {
            return labels;
        }
        if given.len >= self.max {
            return self.other.clone();
        }
        let host: Arc<str> = Arc::from(host);
        let labels = Arc::new(ServerLabels {
            address: SharedString::from(host.clone()),
            port: port.map_or(SharedString::const_str(OTHER), |p| {
                SharedString::from_owned(p.to_string())
            }),
        });
        given
            .hosts
            .entry(host)
            .or_default()
            .push((port, labels.clone()));
        given.len += 1;
        self.given.store(Arc::new(given));
        labels
    }
}
