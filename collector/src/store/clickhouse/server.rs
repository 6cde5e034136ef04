//! A throw-away `clickhouse-server` on loopback, for tests, benchmarks and the two-shard script.
//!
//! Each server gets its own temporary directory (config, users, data, logs) and free ports, so
//! any number can run beside each other and beside a system-wide ClickHouse. Dropping the handle
//! kills the process and removes the directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer `SELECT 1` (18.16 starts in well under a second;
/// the margin is for a loaded CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalServer {
    dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    child: Option<Child>,
}

/// The server binary: `ONRAMP_CLICKHOUSE_SERVER`, else Debian's path, else whatever is on PATH.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ONRAMP_CLICKHOUSE_SERVER") {
        return path.into();
    }
    let debian = Path::new("/usr/sbin/clickhouse-server");
    if debian.exists() {
        debian.into()
    } else {
        "clickhouse-server".into()
    }
}

/// A port nobody listens on right now. The OS may hand it out again before the server binds it;
/// on loopback in a test run that race is rare enough, and start-up then fails loudly.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `start` again with fresh ports if it fails: a port can be taken by another process
/// between [`free_port`] and the server binding it (tests start servers in parallel).
fn retry_ports<T>(mut start: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(e) if attempt < 3 => {
                eprintln!("clickhouse-server did not start ({e}); trying other ports");
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn unique_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "onramp-clickhouse-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// users.xml with `profile` (settings as XML elements) added to the default profile.
fn users_xml(profile: &str) -> String {
    USERS_XML.replace("<max_memory_usage>", &format!("{profile}<max_memory_usage>"))
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;

/// `<remote_servers>` naming one cluster whose shards are the given native (TCP) ports on
/// loopback, one replica each.
pub fn cluster_config(name: &str, tcp_ports: &[u16]) -> String {
    let shards: String = tcp_ports
        .iter()
        .map(|p| format!("<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>"))
        .collect();
    format!("<remote_servers><{name}>{shards}</{name}></remote_servers>")
}

impl LocalServer {
    /// Starts a single server and waits until it answers.
    pub fn start() -> std::io::Result<LocalServer> {
        retry_ports(|| LocalServer::start_with(free_port()?, free_port()?, ""))
    }

    /// Starts `n` servers that all know a cluster `name` with each of them as one shard.
    pub fn start_cluster(name: &str, n: usize) -> std::io::Result<Vec<LocalServer>> {
        retry_ports(|| {
            let ports: Vec<(u16, u16)> = (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<std::io::Result<_>>()?;
            let extra = cluster_config(name, &ports.iter().map(|p| p.1).collect::<Vec<_>>());
            ports.into_iter().map(|(http, tcp)| LocalServer::start_with(http, tcp, &extra)).collect()
        })
    }

    /// A single server whose default profile also has `profile`, settings as XML elements
    /// (e.g. `<log_queries>1</log_queries>` for the benchmarks' CPU figures).
    pub fn start_with_profile(profile: &str) -> std::io::Result<LocalServer> {
        retry_ports(|| LocalServer::start_configured(free_port()?, free_port()?, "", profile))
    }

    /// `extra` is XML placed inside `<yandex>` (e.g. [`cluster_config`]).
    pub fn start_with(http_port: u16, tcp_port: u16, extra: &str) -> std::io::Result<LocalServer> {
        LocalServer::start_configured(http_port, tcp_port, extra, "")
    }

    fn start_configured(http_port: u16, tcp_port: u16, extra: &str, profile: &str) -> std::io::Result<LocalServer> {
        let dir = unique_dir()?;
        let d = dir.display();
        let interserver = free_port()?;
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <interserver_http_port>{interserver}</interserver_http_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <timezone>UTC</timezone>
  {extra}
</yandex>
"#
        );
        std::fs::write(dir.join("config.xml"), config)?;
        std::fs::write(dir.join("users.xml"), users_xml(profile))?;
        let mut server = LocalServer { dir, http_port, tcp_port, child: None };
        server.restart()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A `--store` URL for database `db` on this server.
    pub fn store_url(&self, db: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{db}", self.http_port)
    }

    /// Starts the server again (after [`LocalServer::kill`]) on the same ports and data.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let log = std::fs::File::create(self.dir.join("stdout.log"))?;
        let child = Command::new(server_binary())
            .arg(format!("--config-file={}", self.dir.join("config.xml").display()))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run clickhouse-server ({e}); `cargo xtask setup` installs it")))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(std::io::Error::other(format!("clickhouse-server exited ({status}); see {}", self.dir.display())));
            }
            if self.query("SELECT 1").is_ok_and(|r| r.trim() == "1") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!("clickhouse-server did not answer within {START_TIMEOUT:?}; see {}", self.dir.display())))
    }

    /// Stops the server at once (SIGKILL: an outage, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one statement over HTTP with a blocking socket (usable from `Drop` and set-up code
    /// outside any runtime) and returns the body; a non-200 answer is an error carrying it.
    pub fn query(&self, sql: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
            sql.len()
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let body = response.get(split + 4..).unwrap_or_default();
        let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_vec() };
        let body = String::from_utf8_lossy(&body).into_owned();
        if head.starts_with("http/1.1 200") {
            Ok(body)
        } else {
            Err(std::io::Error::other(body))
        }
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let rest = &body[eol + 2..];
        match size {
            Some(n) if n > 0 && rest.len() >= n => {
                out.extend_from_slice(&rest[..n]);
                body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
            }
            _ => break,
        }
    }
    out
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
