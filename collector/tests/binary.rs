//! The `onramp-collector` executable as an operator meets it: flags and their environment
//! fallbacks, `--help`, the files compiled into it (a copy of the binary alone serves the SDK,
//! dashboard and demo), and what the start-up log tells a new user.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_onramp-collector");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Stops the collector and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    }
}

/// Starts `bin` in `cwd` with `args` and `env`, and waits for its "listening on" line.
fn start(bin: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let spawn = || {
        Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("ONRAMP_CONFIG")
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // A binary just copied may be briefly "busy": a process another test thread forked while
    // the copy was open for writing holds that descriptor until it execs.
    let mut attempt = spawn();
    for _ in 0..50 {
        match &attempt {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(100));
                attempt = spawn();
            }
            _ => break,
        }
    }
    let mut child = attempt.expect("start the collector");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(20)).expect("the collector printed its address");
    Running { child, url }
}

/// A plain blocking GET over a TcpStream (these tests need no async runtime).
fn get(url: &str) -> (u16, Vec<u8>) {
    http::get(url)
}

mod http {
    pub fn get(url: &str) -> (u16, Vec<u8>) {
        request("GET", url, "")
    }

    pub fn request(method: &str, url: &str, body: &str) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut s = std::net::TcpStream::connect(host).expect("connect");
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end") + 4;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
        let mut body = raw[split..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, body)
    }

    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line_end = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
            let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).expect("ascii").trim(), 16).expect("hex");
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
            b = &b[line_end + 2 + size + 2..];
        }
    }
}

#[test]
fn help_exits_zero_and_the_readme_documents_every_flag() {
    let out = Command::new(BIN).arg("--help").output().expect("run --help");
    assert!(out.status.success(), "--help exits 0");
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let mut flags: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .collect();
    flags.sort_unstable();
    flags.dedup();
    assert!(flags.len() >= 14, "flags found in --help: {flags:?}");
    let missing: Vec<&&str> = flags.iter().filter(|f| !readme.contains(&format!("`{f}"))).collect();
    assert!(missing.is_empty(), "flags the README does not document: {missing:?}");
    // Every flag also names its environment variable.
    assert!(help.contains("[env: ONRAMP_LISTEN="), "{help}");
    assert!(Command::new(BIN).arg("--no-such-flag").output().expect("run").status.code() == Some(2));
    assert!(Command::new(BIN).args(["plan", "check", "--help"]).output().expect("run").status.success());
}

#[test]
fn a_copy_of_the_binary_alone_serves_the_sdk_dashboard_and_demo() {
    // The binary copied somewhere else and started there, as an operator deploys it.
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("onramp-collector");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    let running = start(&bin, dir.path(), &["--listen", "127.0.0.1:0"], &[("ONRAMP_QUIET", "1")]);
    assert!(dir.path().join("onramp.db").exists(), "the default database lands in the working directory");

    for (path, file) in [
        ("/dashboard/", "www/dashboard/index.html"),
        ("/dashboard/dashboard.js", "www/dashboard/dashboard.js"),
        ("/demo/", "www/demo/index.html"),
        ("/demo/app.js", "www/demo/app.js"),
    ] {
        let (status, body) = get(&format!("{}{path}", running.url));
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, std::fs::read(repo().join(file)).expect(file), "{path} is {file}");
    }
    // The SDK bundle exists once `cargo xtask build` made it (always so under `cargo xtask test`).
    let loader = repo().join("dist/loader.js");
    if loader.exists() {
        for file in ["loader.js", "index.mjs", "onramp.js", "onramp_bg.wasm"] {
            let (status, body) = get(&format!("{}/sdk/v1/{file}", running.url));
            assert_eq!(status, 200, "{file}");
            assert_eq!(body, std::fs::read(repo().join("dist").join(file)).expect(file), "/sdk/v1/{file}");
        }
    }
    // The demo project's plan is compiled in too.
    let (status, body) = get(&format!("{}/v1/plan?writeKey=wk_demo", running.url));
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(repo().join("pkg-config/plans/trackly.json")).expect("plan"));
    let (status, _) = get(&format!("{}/sdk/v1/../../Cargo.toml", running.url));
    assert_ne!(status, 200, "nothing outside the embedded files");
    running.stop();
}

#[test]
fn flags_fall_back_to_the_environment_and_a_project_without_a_plan_is_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("projects.json");
    std::fs::write(
        &config,
        r#"{"projects":[{"id":"acme","writeKey":"wk_acme","readToken":"rt_acme","allowedOrigins":["*"]}]}"#,
    )
    .expect("write config");
    let db = dir.path().join("x.db");
    let running = start(
        Path::new(BIN),
        dir.path(),
        &["--config", config.to_str().expect("utf-8")],
        &[("ONRAMP_LISTEN", "127.0.0.1:0"), ("ONRAMP_DB", db.to_str().expect("utf-8")), ("ONRAMP_QUIET", "1")],
    );
    assert!(db.exists(), "ONRAMP_DB was used");
    let (status, _) = get(&format!("{}/v1/plan?writeKey=wk_acme", running.url));
    assert_eq!(status, 204);
    let (status, _) = get(&format!("{}/v1/plan?writeKey=wk_demo", running.url));
    assert_eq!(status, 401, "a configured collector does not serve the demo project");
    let log = running.stop();
    assert!(log.contains("project \"acme\" has no plan") && log.contains("--plan acme=FILE"), "{log}");

    // With the plan given by flag, no warning.
    let plan = repo().join("pkg-config/plans/shopfront.json");
    let running = start(
        Path::new(BIN),
        dir.path(),
        // A flag given twice takes its last value, as scripts that append overrides expect.
        &["--listen", "127.0.0.1:1", "--config", config.to_str().expect("utf-8"), "--plan", &format!("acme={}", plan.display()), "--listen", "127.0.0.1:0"],
        &[("ONRAMP_DB", db.to_str().expect("utf-8")), ("ONRAMP_QUIET", "1")],
    );
    let (status, _) = get(&format!("{}/v1/plan?writeKey=wk_acme", running.url));
    assert_eq!(status, 200);
    let log = running.stop();
    assert!(!log.contains("has no plan"), "{log}");
}

#[test]
fn backup_and_privacy_subcommands_work_on_a_running_collectors_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.db");
    let db_arg = db.to_str().expect("utf-8");
    let running = start(Path::new(BIN), dir.path(), &["--listen", "127.0.0.1:0", "--db", db_arg, "--quiet"], &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let events: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"id":"e{i}","type":"track","name":"n","anonymousId":"a{}","userId":"u{}","ts":{now}}}"#, i % 5, i % 5))
        .collect();
    let batch = format!(r#"{{"writeKey":"wk_demo","sentAt":{now},"events":[{}]}}"#, events.join(","));
    assert_eq!(http::request("POST", &format!("{}/v1/batch", running.url), &batch).0, 200);

    // While it runs: a consistent copy with every acknowledged event.
    let copy = dir.path().join("copy.db");
    let out = Command::new(BIN).args(["backup", copy.to_str().expect("utf-8"), "--db", db_arg]).output().expect("backup");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let count = |path: &Path| -> i64 {
        rusqlite::Connection::open(path).expect("open").query_row("SELECT count(*) FROM events", [], |r| r.get(0)).expect("count")
    };
    assert_eq!(count(&copy), 50);
    let again = Command::new(BIN).args(["backup", copy.to_str().expect("utf-8"), "--db", db_arg]).output().expect("backup");
    assert!(!again.status.success(), "never overwrites a file");

    let out = Command::new(BIN).args(["users", "export", "u1", "--project", "demo", "--db", db_arg]).output().expect("export");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON export");
    assert_eq!(doc["events"].as_array().map(Vec::len), Some(10));
    let out = Command::new(BIN).args(["users", "delete", "u1", "--project", "demo", "--db", db_arg]).output().expect("delete");
    assert!(out.status.success());
    assert_eq!(count(&db), 40);
    let (status, _) = get(&format!("{}/healthz", running.url));
    assert_eq!(status, 200, "the collector kept running throughout");
    running.stop();
}
