//! Real Redis for the fleet tests and the fleet bench, on free loopback ports: a
//! `redis-server` ([`RedisServer`]), one speaking TLS only with an ACL user ([`TlsRedis`]),
//! a Redis Cluster ([`RedisCluster`], plain or TLS). Every process is killed, and every file
//! it was given removed, on drop. `.ci/run` installs them (`apt-get install -y redis-server`,
//! which brings `redis-cli`).
//!
//! Included as `#[path = "common/redis.rs"] mod real_redis;` (a module named `redis` would
//! hide the `redis` crate).
// Each test file uses what it needs of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// How long a cluster node may be unreachable before the others fail it over: short, so that
/// a failover takes a second or two.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------
// What every server shares: its command line, its process, its files
// ---------------------------------------------------------------------------------------

/// `redis-server` on `port` of 127.0.0.1, without persistence, logging warnings only: plain,
/// or TLS only when `tls` names a directory of certificates (see [`write_certificates`]),
/// clients not asked for one.
fn server_command(port: u16, tls: Option<&Path>) -> Command {
    let port = port.to_string();
    let mut command = Command::new("redis-server");
    match tls {
        None => command.args(["--port", &port]),
        Some(tls) => command
            .args(["--port", "0", "--tls-port", &port])
            .arg("--tls-cert-file")
            .arg(tls.join("server.pem"))
            .arg("--tls-key-file")
            .arg(tls.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(tls.join("ca.pem"))
            .args(["--tls-auth-clients", "no"]),
    };
    command
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A running `redis-server`, killed on drop.
struct Process(Child);

impl Process {
    fn spawn(mut command: Command) -> Self {
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}): install it, apt-get install -y redis-server")
        });
        Process(child)
    }

    /// Waits until `ready` says it is (at most 10 s); `Err` with its exit status, and what
    /// it said if its stderr was kept, when it exits first.
    fn wait_until(&mut self, ready: impl Fn() -> bool) -> Result<(), (ExitStatus, String)> {
        let start = std::time::Instant::now();
        while !ready() {
            if let Ok(Some(status)) = self.0.try_wait() {
                let mut said = String::new();
                if let Some(mut stderr) = self.0.stderr.take() {
                    let _ = stderr.read_to_string(&mut said);
                }
                return Err((status, said));
            }
            assert!(start.elapsed() < 10 * SECOND, "redis-server did not start");
            std::thread::sleep(10 * MS);
        }
        Ok(())
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory of this process's, for the server on `port`, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str, port: u16) -> Self {
        let name = format!("resilient-http-{kind}-{}-{port}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Writes into `dir` a CA (`ca.pem`), and a certificate for 127.0.0.1 and localhost that it
/// signs (`server.pem`, `server.key`).
pub fn write_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: a certificate whose issuer is its own subject is self-signed to
    // OpenSSL (redis-cli, and the cluster's nodes checking one another).
    (ca_params.distinguished_name).push(DnType::CommonName, "resilient-http test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// `calls=` of each of `commands` in an `INFO commandstats` answer, summed.
fn calls(commandstats: &str, commands: &[&str]) -> u64 {
    (commands.iter())
        .filter_map(|command| {
            commandstats
                .lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// One redis-server
// ---------------------------------------------------------------------------------------

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct RedisServer {
    port: u16,
    process: Option<Process>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            process: None,
        };
        server.restart();
        server
    }

    /// Starts it (again) on its port, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "already running");
        let mut process = Process::spawn(server_command(self.port, None));
        if let Err((status, _)) = process.wait_until(|| self.answers()) {
            panic!("redis-server exited ({status})");
        }
        self.process = Some(process);
    }

    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Whether it answers a `PING`, over a plain socket.
    pub fn answers(&self) -> bool {
        let Ok(mut socket) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(SECOND));
        let mut reply = [0; 7];
        socket.write_all(b"PING\r\n").is_ok()
            && socket.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Freezes it (`SIGSTOP`: connections stay open, nothing is answered), or thaws it.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.process.as_ref().expect("running").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("a connection to the test's redis-server")
    }

    /// Round trips the fleets made, as Redis counted them: scripts run (`EVALSHA`, and
    /// `SCRIPT LOAD` and `EVAL` when it did not know one yet) and `PING`s. (Not the commands
    /// the scripts ran, nor those of setting up a connection.)
    pub fn round_trips(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .unwrap();
        calls(&info, &["evalsha", "eval", "script", "ping"])
    }

    pub fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL").arg(key).query(&mut self.conn()).unwrap()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut self.conn()).unwrap();
        keys.sort();
        keys
    }
}

// ---------------------------------------------------------------------------------------
// One redis-server speaking TLS only, with an ACL user
// ---------------------------------------------------------------------------------------

/// A `redis-server` listening with TLS only, its certificate signed by a CA of its own, and
/// one ACL user (the default user off); killed, and its files removed, on drop.
pub struct TlsRedis {
    port: u16,
    user: String,
    process: Process,
    certificates: TempDir,
}

impl TlsRedis {
    pub fn start(user: &str, password: &str) -> Self {
        let port = free_port();
        let certificates = TempDir::new("tls", port);
        write_certificates(&certificates.0);
        let mut command = server_command(port, Some(&certificates.0));
        command
            // A config line's words as separate arguments (one with spaces is one name).
            .args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ])
            .args(["--user", "default", "off"])
            .stderr(Stdio::piped());
        let mut process = Process::spawn(command);
        let listening = || TcpStream::connect(("127.0.0.1", port)).is_ok();
        // A redis-server built without TLS refuses `--tls-port` and exits at once.
        if let Err((status, said)) = process.wait_until(listening) {
            panic!(
                "redis-server exited ({status}) instead of listening with TLS: is it built with \
                 TLS (Debian's is; `redis-server --tls-port 1` must not say \"Bad directive\")?\n\
                 {said}"
            );
        }
        TlsRedis {
            port,
            user: user.to_owned(),
            process,
            certificates,
        }
    }

    /// `rediss://` as its user, with `password` (right or wrong).
    pub fn url(&self, password: &str) -> String {
        format!("rediss://{}:{password}@127.0.0.1:{}", self.user, self.port)
    }

    /// The CA that signed its certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.certificates.0.join("ca.pem")
    }

    /// The directory of its certificates.
    pub fn dir(&self) -> &Path {
        &self.certificates.0
    }
}

// ---------------------------------------------------------------------------------------
// A Redis Cluster
// ---------------------------------------------------------------------------------------

/// `primaries` primaries, each with `replicas_each` replicas: `redis-server --cluster-enabled
/// yes` on free loopback ports (each with its bus port, 10,000 above, free too), joined by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    ports: Vec<u16>,
    // Before `dir`: killed before their files are removed.
    nodes: Vec<Option<Process>>,
    dir: TempDir,
    /// Whether the nodes speak TLS only, to clients and to one another, with the
    /// certificates in `dir`.
    tls: bool,
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
        Self::start_with(primaries, replicas_each, false)
    }

    /// [`start`](Self::start), the nodes speaking TLS only, with certificates of a CA of
    /// the cluster's own ([`ca_file`](Self::ca_file)).
    pub fn start_tls(primaries: usize, replicas_each: usize) -> Self {
        Self::start_with(primaries, replicas_each, true)
    }

    fn start_with(primaries: usize, replicas_each: usize, tls: bool) -> Self {
        let count = primaries * (1 + replicas_each);
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < count {
            let port = free_port_pair();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let dir = TempDir::new("cluster", ports[0]);
        if tls {
            write_certificates(&dir.0);
        }
        let mut cluster = RedisCluster {
            nodes: ports.iter().map(|_| None).collect(),
            ports,
            dir,
            tls,
        };
        for node in 0..count {
            cluster.spawn(node);
        }
        let mut create = Command::new("redis-cli");
        if cluster.tls {
            create.arg("--tls").arg("--cacert").arg(cluster.ca_file());
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

    /// The CA that signed the nodes' certificate (with [`start_tls`](Self::start_tls)).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
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
        let port = self.ports[node];
        let conf = self.dir.0.join(format!("nodes-{port}.conf"));
        let _ = std::fs::remove_file(&conf);
        let mut command = server_command(port, self.tls.then_some(self.dir.0.as_path()));
        if self.tls {
            command.args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
        command
            .args(["--cluster-enabled", "yes"])
            // Replicas sync at once (not 5 s later), so that they can take over from the start.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .arg("--cluster-node-timeout")
            .arg(NODE_TIMEOUT.as_millis().to_string())
            .arg("--dir")
            .arg(&self.dir.0);
        let mut process = Process::spawn(command);
        let answers = || self.query::<String>(node, &mut redis::cmd("PING")).is_ok();
        if process.wait_until(answers).is_err() {
            return false;
        }
        self.nodes[node] = Some(process);
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
        let scheme = if self.tls { "rediss" } else { "redis" };
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
        let client = if !self.tls {
            redis::Client::open(self.url(node))?
        } else {
            #[cfg(feature = "redis-tls")]
            {
                redis::Client::build_with_tls(
                    self.url(node),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(std::fs::read(self.ca_file()).unwrap()),
                    },
                )?
            }
            #[cfg(not(feature = "redis-tls"))]
            panic!("TLS needs the redis-tls feature")
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
        calls(&info, &["evalsha", "eval"])
    }

    pub fn pttl(&self, key: &str) -> i64 {
        let node = self.primary_of(key, 0);
        self.query(node, redis::cmd("PTTL").arg(key)).unwrap()
    }

    /// Kills `node` (as a crash would: no goodbye to the others).
    pub fn kill(&mut self, node: usize) {
        self.nodes[node] = None;
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].is_some()
    }
}
