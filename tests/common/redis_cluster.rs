//! A real Redis Cluster for the fleet tests: `redis-server --cluster-enabled yes` on free
//! loopback ports (each with its bus port, 10,000 above, free too), joined by `redis-cli
//! --cluster create`; every node killed, and its directory removed, on drop. `.ci/run`
//! installs both (`apt-get install -y redis-server`, which brings `redis-cli`).
// Each test file uses what it needs of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// How long a node may be unreachable before the others fail it over: short, so that a
/// failover takes a second or two.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(500);

/// `primaries` primaries, each with `replicas_each` replicas.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
    /// A directory with `ca.pem`, `server.pem` and `server.key`: the nodes speak TLS only, to
    /// clients and to one another.
    tls: Option<PathBuf>,
}

/// Ports handed out in this process (the tests of one binary run at once): a port, or its
/// bus port, is never handed out twice.
static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A port free for the node and for its cluster bus (the port + 10,000).
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        if port >= 55_000 {
            continue;
        }
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        // Neither this port nor its bus port is a port or a bus port handed out already.
        let clash = taken.iter().any(|other| {
            [*other, other + 10_000].contains(&port)
                || [*other, other + 10_000].contains(&(port + 10_000))
        });
        if !clash && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            taken.push(port);
            return port;
        }
    }
}

impl RedisCluster {
    pub fn start(primaries: usize, replicas_each: usize) -> Self {
        Self::start_with(primaries, replicas_each, None)
    }

    /// [`start`](Self::start), with TLS only when `tls` names a directory of certificates.
    pub fn start_with(primaries: usize, replicas_each: usize, tls: Option<PathBuf>) -> Self {
        let count = primaries * (1 + replicas_each);
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < count {
            let port = free_port_pair();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "resilient-http-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = RedisCluster {
            children: ports.iter().map(|_| None).collect(),
            ports,
            dir,
            tls,
        };
        for node in 0..count {
            cluster.spawn(node);
        }
        let mut create = Command::new("redis-cli");
        if let Some(tls) = &cluster.tls {
            create.arg("--tls").arg("--cacert").arg(tls.join("ca.pem"));
        }
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let made = create
            .args([
                "--cluster-replicas",
                &replicas_each.to_string(),
                "--cluster-yes",
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): apt-get install -y redis-server")
            });
        assert!(
            made.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&made.stdout),
            String::from_utf8_lossy(&made.stderr)
        );
        cluster.wait_until_ok(&(0..count).collect::<Vec<_>>());
        cluster.wait_until_replicas_synced();
        cluster
    }

    /// Waits until every replica has synced with its primary (until then it could not take
    /// over).
    fn wait_until_replicas_synced(&self) {
        let start = std::time::Instant::now();
        for node in 0..self.len() {
            loop {
                let info: String = self
                    .query(node, redis::cmd("INFO").arg("replication"))
                    .unwrap_or_default();
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(start.elapsed() < 20 * SECOND, "a replica never synced");
                std::thread::sleep(20 * MS);
            }
        }
    }

    /// Starts `node`; on a port another process took meanwhile, on new ports.
    fn spawn(&mut self, node: usize) {
        while !self.try_spawn(node) {
            self.ports[node] = free_port_pair();
        }
    }

    fn try_spawn(&mut self, node: usize) -> bool {
        let port = self.ports[node].to_string();
        let conf = self.dir.join(format!("nodes-{port}.conf"));
        let _ = std::fs::remove_file(&conf);
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .arg("--tls-cert-file")
                .arg(tls.join("server.pem"))
                .arg("--tls-key-file")
                .arg(tls.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(tls.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .args(["--cluster-enabled", "yes"])
            // Replicas sync at once (not 5 s later), so that they can take over from the start.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .arg("--cluster-node-timeout")
            .arg(NODE_TIMEOUT.as_millis().to_string())
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it, apt-get install -y redis-server")
            });
        self.children[node] = Some(child);
        let start = std::time::Instant::now();
        while self.query::<String>(node, &mut redis::cmd("PING")).is_err() {
            let exited = self.children[node].as_mut().map(|c| c.try_wait());
            if let Some(Ok(Some(_))) = exited {
                self.children[node] = None;
                return false;
            }
            assert!(start.elapsed() < 10 * SECOND, "redis-server did not start");
            std::thread::sleep(10 * MS);
        }
        true
    }

    /// Waits until every one of `nodes` says the cluster is ok and sees every slot served.
    pub fn wait_until_ok(&self, nodes: &[usize]) {
        let start = std::time::Instant::now();
        loop {
            let ok = nodes.iter().all(|node| {
                self.query::<String>(*node, redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|info| {
                        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                    })
            });
            if ok {
                return;
            }
            assert!(start.elapsed() < 20 * SECOND, "the cluster never became ok");
            std::thread::sleep(20 * MS);
        }
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// `redis://127.0.0.1:{port}` of `node` (`rediss://` with TLS).
    pub fn url(&self, node: usize) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.ports[node])
    }

    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|node| self.url(node)).collect()
    }

    pub fn query<T: redis::FromRedisValue>(
        &self,
        node: usize,
        cmd: &mut redis::Cmd,
    ) -> redis::RedisResult<T> {
        let client = match &self.tls {
            None => redis::Client::open(self.url(node))?,
            #[cfg(feature = "redis-tls")]
            Some(tls) => redis::Client::build_with_tls(
                self.url(node),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(tls.join("ca.pem")).unwrap()),
                },
            )?,
            #[cfg(not(feature = "redis-tls"))]
            Some(_) => panic!("TLS needs the redis-tls feature"),
        };
        let mut conn = client.get_connection_with_timeout(SECOND)?;
        conn.set_read_timeout(Some(SECOND))?;
        cmd.query(&mut conn)
    }

    /// The node serving `key`'s slot as its primary, as `from` sees it.
    pub fn primary_of(&self, key: &str, from: usize) -> usize {
        self.serving(key, from)
            .unwrap_or_else(|| panic!("no primary serves {key}'s slot"))
    }

    /// The node serving `key`'s slot as its primary, as `from` sees it, if one does (none
    /// while a failover is under way).
    pub fn serving(&self, key: &str, from: usize) -> Option<usize> {
        let slot: u16 = self
            .query(from, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .unwrap();
        let nodes: String = self
            .query(from, redis::cmd("CLUSTER").arg("NODES"))
            .unwrap();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                match (low.parse::<u16>(), high.parse::<u16>()) {
                    (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|port| port.parse().ok())
                    .unwrap();
                return self.ports.iter().position(|p| *p == port);
            }
        }
        None
    }

    /// Scripts run by `node` (`EVALSHA`, `EVAL`), as it counts them.
    pub fn scripts_run(&self, node: usize) -> u64 {
        let info: String = self
            .query(node, redis::cmd("INFO").arg("commandstats"))
            .unwrap();
        ["evalsha", "eval"]
            .iter()
            .filter_map(|command| {
                info.lines()
                    .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum()
    }

    pub fn pttl(&self, key: &str) -> i64 {
        let node = self.primary_of(key, 0);
        self.query(node, redis::cmd("PTTL").arg(key)).unwrap()
    }

    /// Kills `node` (as a crash would: no goodbye to the others).
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.children[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.children[node].is_some()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in 0..self.children.len() {
            self.kill(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
