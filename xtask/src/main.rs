//! `cargo xtask setup|build|demo|test|bench` — every step a new machine needs, in one place.
//!
//! - `setup`: installs what the project needs beyond Rust, Node and Python: the wasm32 target,
//!   the wasm-bindgen CLI matching the crate, npm tools (binaryen's wasm-opt, esbuild,
//!   playwright-core, axe-core), Debian's Chromium and ChromeDriver, and Debian's
//!   clickhouse-server (the collector's tests start their own instances of it). Idempotent and
//!   quick when everything is present.
//! - `build`: the SDK bundle in `dist/` (wasm, JS glue, loader, ES module, types), then the
//!   collector binary, which embeds it; prints the bundle's sizes.
//! - `demo`: builds, then runs the collector with SQLite and prints the URLs to open.
//! - `test`: builds, then runs every test: Rust (native), and the browser tests in headless
//!   Chromium against the shipped bundle.
//! - `bench`: size and speed figures beside the peers' (see BENCHMARKS.md).

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result {
    eprintln!("$ {}", describe(cmd));
    let status = cmd.status().map_err(|e| format!("{}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The wasm-bindgen version pinned in Cargo.lock; the CLI must match it exactly.
fn wasm_bindgen_version() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_owned());
            }
        }
    }
    Err("wasm-bindgen not found in Cargo.lock".into())
}

fn setup() -> Result {
    if output(Command::new("rustup").args(["target", "list", "--installed"]))
        .is_some_and(|t| !t.contains("wasm32-unknown-unknown"))
    {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    // The lock file pins wasm-bindgen; generate it if this is a fresh checkout without one.
    if !root().join("Cargo.lock").exists() {
        run(cargo().args(["generate-lockfile"]))?;
    }
    let version = wasm_bindgen_version()?;
    let installed = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if !installed.ends_with(&version) {
        let spec = format!("={version}");
        // --locked is preferred, but falls back when a locked dependency is missing from the
        // registry mirror.
        if run(cargo().args(["install", "wasm-bindgen-cli", "--locked", "--version", &spec])).is_err() {
            run(cargo().args(["install", "wasm-bindgen-cli", "--version", &spec]))?;
        }
    }
    if !root().join("node_modules/.bin/wasm-opt").exists() || !root().join("node_modules/playwright-core").exists() {
        let npm_cmd = if root().join("package-lock.json").exists() { "ci" } else { "install" };
        run(Command::new("npm").arg(npm_cmd).current_dir(root()))?;
    }
    let missing: Vec<&str> = [("chromium", "/usr/bin/chromium"), ("chromium-driver", "/usr/bin/chromedriver"), ("brotli", "/usr/bin/brotli"), ("sqlite3", "/usr/bin/sqlite3"), ("clickhouse-server", "/usr/sbin/clickhouse-server")]
        .into_iter()
        .filter(|(_, path)| !Path::new(path).exists())
        .map(|(pkg, _)| pkg)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    Ok(())
}

/// Installs Debian packages (the machines here run as root; elsewhere sudo is used).
pub fn apt_install(packages: &[&str]) -> Result {
    let sudo = output(Command::new("id").arg("-u")).is_some_and(|uid| uid != "0");
    let apt = |args: &[&str]| {
        let mut c = Command::new(if sudo { "sudo" } else { "apt-get" });
        if sudo {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q"]);
    install.args(packages);
    run(&mut install)
}

fn file_size(path: &Path) -> usize {
    std::fs::metadata(path).map(|m| m.len() as usize).unwrap_or(0)
}

/// Compressed size of a file with an external compressor reading stdin (`gzip -9`, `brotli`).
fn compressed_size(path: &Path, program: &str, args: &[&str]) -> Option<usize> {
    let out = Command::new(program).args(args).arg("-c").arg(path).output().ok()?;
    out.status.success().then_some(out.stdout.len())
}

pub fn sizes(path: &Path) -> (usize, Option<usize>, Option<usize>) {
    (
        file_size(path),
        compressed_size(path, "gzip", &["-9"]),
        compressed_size(path, "brotli", &["-q", "11"]),
    )
}

fn build() -> Result {
    let started = std::time::Instant::now();
    let root = root();
    let dist = root.join("dist");
    let out = root.join("target/wasm32-unknown-unknown/wasm");
    // The lean tracker first (no `guide` feature: no engine, no tips), kept under its own name:
    // both builds write onramp.wasm.
    run(cargo().args(["build", "--profile", "wasm", "--target", "wasm32-unknown-unknown", "-p", "onramp", "--no-default-features"]))?;
    std::fs::copy(out.join("onramp.wasm"), out.join("tracker.wasm")).map_err(|e| format!("tracker.wasm: {e}"))?;
    // The guide with preview and debug mode, loaded only for a preview link (docs/AUTHORING.md).
    run(cargo().args(["build", "--profile", "wasm", "--target", "wasm32-unknown-unknown", "-p", "onramp", "--features", "preview"]))?;
    std::fs::copy(out.join("onramp.wasm"), out.join("preview.wasm")).map_err(|e| format!("preview.wasm: {e}"))?;
    run(cargo().args(["build", "--profile", "wasm", "--target", "wasm32-unknown-unknown", "-p", "onramp"]))?;
    std::fs::create_dir_all(&dist).map_err(|e| e.to_string())?;
    let esbuild = root.join("node_modules/.bin/esbuild");
    for name in ["tracker", "preview", "onramp"] {
        run(Command::new("wasm-bindgen").args(["--target", "web", "--out-dir"]).arg(&dist).arg(out.join(format!("{name}.wasm"))))?;
        let wasm = dist.join(format!("{name}_bg.wasm"));
        let wasm_opt = root.join("node_modules/.bin/wasm-opt");
        if wasm_opt.exists() {
            shorten_names(&wasm_opt, &wasm, &dist.join(format!("{name}.js")), &format!("./{name}_bg.js"))?;
            run(Command::new(&wasm_opt).args(wasm_opt_passes(name)).arg(&wasm).arg("-o").arg(&wasm))?;
        } else {
            eprintln!("warning: node_modules/.bin/wasm-opt missing (run `cargo xtask setup`); bundle not optimised");
        }
    }
    for file in ["loader.js", "index.mjs"] {
        let src = root.join("www/sdk").join(file);
        if esbuild.exists() {
            run(Command::new(&esbuild).arg(&src).arg("--minify").arg(format!("--outfile={}", dist.join(file).display())))?;
        } else {
            std::fs::copy(&src, dist.join(file)).map_err(|e| e.to_string())?;
        }
    }
    if esbuild.exists() {
        // wasm-bindgen's glue is readable source: minified it is 1.4 KB smaller gzipped.
        for glue in ["onramp.js", "tracker.js", "preview.js"] {
            let glue = dist.join(glue);
            run(Command::new(&esbuild).arg(&glue).args(["--minify", "--allow-overwrite"]).arg(format!("--outfile={}", glue.display())))?;
        }
    }
    serve_files(&dist, &esbuild)?;
    std::fs::copy(root.join("www/sdk/index.d.ts"), dist.join("index.d.ts")).map_err(|e| e.to_string())?;
    std::fs::copy(root.join("pkg-config/package.json"), dist.join("package.json")).map_err(|e| e.to_string())?;
    // After dist/: the collector embeds the bundle (collector/src/assets.rs).
    run(cargo().args(["build", "--release", "-p", "onramp-collector"]))?;
    println!("built dist/ and the collector in {:.1}s", started.elapsed().as_secs_f64());
    println!("{:<16} {:>9} {:>9} {:>9}", "file", "raw", "gzip -9", "brotli");
    for file in ["loader.js", "index.mjs", "onramp.js", "onramp_bg.wasm", "tracker.js", "tracker_bg.wasm", "preview.js", "preview_bg.wasm"] {
        let (raw, gz, br) = sizes(&dist.join(file));
        let show = |n: Option<usize>| n.map_or("-".into(), |n| n.to_string());
        println!("{file:<16} {raw:>9} {:>9} {:>9}", show(gz), show(br));
    }
    Ok(())
}

/// The wasm-opt passes after [`shorten_names`] for bundle `name` (the bench's twiggy breakdown
/// runs the same). npm's binaryen (v132) reads the module's features itself; Debian's old one
/// corrupts it. Sizes measured on the tracker with binaryen 132.
pub fn wasm_opt_passes(name: &str) -> Vec<&'static str> {
    // The tracker, which every page loads, is optimised until it stops shrinking (256 B gzip
    // less), after a flatten/re-loop round that finds merges -Oz alone misses (190 B gzip
    // less). The full SDK, which every user in onboarding loads, gets the same rounds after
    // merging functions that differ only in constants (the engine's and the tips' many
    // monomorphised copies): 4.2 KB raw, 1.3 KB gzip, 0.97 KB brotli smaller than -Oz alone, for
    // about 16 s more CPU. The preview bundle, for plan authors only, keeps the quick -Oz.
    // For the tracker, binaryen inlines a function with one caller only up to 400 bytes: it
    // inlined every one, and the whole machine and browser layer became one 17 KB function that
    // Chromium compiled on the main thread at init and tiered up as a whole (170 B gzip smaller
    // too, measured).
    let mut passes = match name {
        "tracker" => vec!["--one-caller-inline-max-function-size", "400", "-Oz", "--flatten", "--rereloop", "-Oz", "--converge"],
        "onramp" => vec!["--merge-similar-functions", "-Oz", "--flatten", "--rereloop", "-Oz", "--converge"],
        _ => vec!["-Oz"],
    };
    // What holds for every wasm-bindgen module and lets binaryen drop more (tracker: 280 B
    // gzip): a fresh instance's memory is zeros (zero bytes of data segments need not be
    // shipped); Rust puts nothing in the first 1 KB (the bottom of its 1 MB stack, reached only
    // just before a stack overflow), so address arithmetic there can be folded; and the
    // `producers` section (compiler versions, 100 B) is unused.
    passes.extend(["--zero-filled-memory", "--low-memory-unused", "--strip-producers", "--strip-target-features"]);
    passes
}

/// Gives the wasm's imports, exports and import module names of one or two letters, and its
/// wasm-bindgen glue (`glue`, still unminified) the same names. wasm-bindgen names every import
/// after its JS function plus a 16-hex-digit hash: incompressible bytes the browser downloaded
/// twice, in the wasm and in the glue. Measured on the tracker: wasm 2.1 KB gzip (1.3 KB brotli)
/// smaller, glue 0.9 KB gzip. The glue is checked to name each import once (the key of its
/// imports object) and each export only as `wasm.<name>`, so a wasm-bindgen that writes its
/// glue otherwise fails the build instead of shipping a bundle that cannot start.
fn shorten_names(wasm_opt: &Path, wasm: &Path, glue: &Path, module: &str) -> Result {
    let output = Command::new(wasm_opt)
        .arg("--minify-imports-and-exports-and-modules")
        .arg(wasm)
        .arg("-o")
        .arg(wasm)
        .output()
        .map_err(|e| format!("wasm-opt: {e}"))?;
    if !output.status.success() {
        return Err(format!("wasm-opt --minify-imports-and-exports-and-modules failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let map: serde_json::Value = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter()
        .next()
        .ok_or("wasm-opt printed no name map")?
        .map_err(|e| format!("wasm-opt's name map: {e}"))?;
    let pairs = |key: &str| -> Result<Vec<(String, String)>> {
        let rows = map.get(key).and_then(|v| v.as_array()).ok_or(format!("wasm-opt's name map has no {key}"))?;
        rows.iter()
            .map(|row| {
                let row: Vec<&str> = row.as_array().map(|r| r.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
                match row[..] {
                    [old, new] | [_, old, new] => Ok((old.to_string(), new.to_string())),
                    _ => Err(format!("wasm-opt's name map: unexpected row {row:?}")),
                }
            })
            .collect()
    };
    let mut text = std::fs::read_to_string(glue).map_err(|e| format!("{}: {e}", glue.display()))?;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    // Replaces `before + old` (not preceded or followed by an identifier character) with
    // `before + new`, when followed by `after`; returns how many.
    let replace = |text: &mut String, before: &str, old: &str, new: &str, after: &str| -> usize {
        let needle = format!("{before}{old}");
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        let mut count = 0;
        while let Some(i) = rest.find(&needle) {
            let end = i + needle.len();
            let starts = rest[..i].chars().next_back().is_none_or(|c| !is_ident(c));
            let tail = &rest[end..];
            let ends = tail.chars().next().is_none_or(|c| !is_ident(c)) && tail.starts_with(after);
            out.push_str(&rest[..i]);
            if starts && ends {
                out.push_str(before);
                out.push_str(new);
                count += 1;
            } else {
                out.push_str(&needle);
            }
            rest = tail;
        }
        out.push_str(rest);
        *text = out;
        count
    };
    for (old, new) in pairs("imports")? {
        // The key of the glue's imports object, written unquoted by wasm-bindgen.
        let n = replace(&mut text, "", &old, &format!("\"{new}\""), ":");
        if n != 1 {
            return Err(format!("{}: import {old} appears {n} times as a key, expected once", glue.display()));
        }
    }
    for (old, new) in pairs("exports")? {
        replace(&mut text, "wasm.", &old, &new, "");
        // Reached any other way (by a string, from `instance.exports`) it would be missed.
        if [format!("\"{old}\""), format!("'{old}'"), format!("exports.{old}")].iter().any(|other| text.contains(other.as_str())) {
            return Err(format!("{}: export {old} is used other than as wasm.{old}", glue.display()));
        }
    }
    // Every import module is now "a" (binaryen's name for the one module it keeps).
    let key = format!("\"{module}\":");
    if text.matches(&key).count() != 1 || std::fs::read(wasm).map_err(|e| e.to_string())?.windows(module.len()).any(|w| w == module.as_bytes()) {
        return Err(format!("{}: the import module {module} is not renamed as expected", glue.display()));
    }
    let text = text.replacen(&key, "\"a\":", 1);
    std::fs::write(glue, text).map_err(|e| format!("{}: {e}", glue.display()))
}

/// `name.ext` → `name.<first 10 hex digits of its SHA-256>.ext`: the collector caches such
/// names for a year as immutable (collector/src/sdk_files.rs recognises them).
fn hashed_name(name: &str, content: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(content);
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hex}.{ext}"),
        None => format!("{name}.{hex}"),
    }
}

/// Writes `content` to `dist` under its content-hashed name; returns the name.
fn write_hashed(dist: &Path, name: &str, content: &[u8]) -> Result<String> {
    let hashed = hashed_name(name, content);
    std::fs::write(dist.join(&hashed), content).map_err(|e| format!("{hashed}: {e}"))?;
    Ok(hashed)
}

/// What the collector serves the script-tag route: the ES module bundled with its wasm-bindgen
/// glue (one request instead of a chain of imports) and the wasm, both under content-hashed
/// names that `loader.js` names, so the loader fetches them in parallel and they can be cached
/// as immutable. Then every served file is precompressed (`.br`, `.gz`) for the collector to
/// answer by `Accept-Encoding`.
fn serve_files(dist: &Path, esbuild: &Path) -> Result {
    // Earlier builds' hashed files: a deployment that copies dist/ keeps them for the 5 minutes
    // a cached loader may still name them; here they are only clutter.
    for entry in std::fs::read_dir(dist).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = name.trim_end_matches(".br").trim_end_matches(".gz");
        if is_hashed(base) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // (glue the module imports, served module name, wasm, the names loader.js gives them): the
    // full SDK, the lean tracker, and the full SDK with preview mode.
    let bundles = [
        ("onramp.js", "onramp.mjs", "onramp_bg.wasm", "\"index.mjs\"", "\"onramp_bg.wasm\""),
        ("tracker.js", "tracker.mjs", "tracker_bg.wasm", "\"tracker.mjs\"", "\"tracker_bg.wasm\""),
        ("preview.js", "preview.mjs", "preview_bg.wasm", "\"preview.mjs\"", "\"preview_bg.wasm\""),
    ];
    let mut replacements = Vec::new();
    for (glue, served, wasm, _, _) in bundles {
        let module = if esbuild.exists() {
            // index.mjs imports ./onramp.js; the tracker's entry imports its own glue instead.
            let index = std::fs::read_to_string(dist.join("index.mjs")).map_err(|e| e.to_string())?;
            let entry = dist.join("entry.tmp.mjs");
            std::fs::write(&entry, index.replace("./onramp.js", &format!("./{glue}"))).map_err(|e| e.to_string())?;
            let bundled = dist.join("bundle.tmp.mjs");
            run(Command::new(esbuild)
                .arg(&entry)
                .args(["--bundle", "--format=esm", "--minify"])
                .arg(format!("--outfile={}", bundled.display())))?;
            // V8's explicit compile hint: compile every function of the module with the module,
            // not each on its first call. Nearly all of glue and entry run during start-up, and
            // compiled one by one on the main thread they were most of the JS compile time
            // between loader start and ready (Chromium trace, tracker: 116 lazy compiles, 38
            // with the hint). Browsers without the hint read a comment.
            let mut text = b"//# allFunctionsCalledOnLoad\n".to_vec();
            text.extend(std::fs::read(&bundled).map_err(|e| e.to_string())?);
            let _ = std::fs::remove_file(&bundled);
            let _ = std::fs::remove_file(&entry);
            write_hashed(dist, served, &text)?
        } else {
            return Err("esbuild missing (run `cargo xtask setup`): it bundles the served module".into());
        };
        let hashed_wasm = write_hashed(dist, wasm, &std::fs::read(dist.join(wasm)).map_err(|e| e.to_string())?)?;
        replacements.push((module, hashed_wasm));
    }
    let loader_path = dist.join("loader.js");
    let mut loader = std::fs::read_to_string(&loader_path).map_err(|e| e.to_string())?;
    let names: Vec<&str> = bundles.iter().flat_map(|b| [b.3, b.4]).collect();
    let hashed: Vec<&String> = replacements.iter().flat_map(|(m, w)| [m, w]).collect();
    for (name, hashed) in names.iter().zip(&hashed) {
        if !loader.contains(name) {
            return Err(format!("www/sdk/loader.js no longer names {name}; update serve_files"));
        }
        loader = loader.replacen(name, &format!("\"{hashed}\""), 1);
    }
    std::fs::write(&loader_path, loader).map_err(|e| e.to_string())?;
    let mut served: Vec<&str> = vec!["loader.js", "index.mjs", "onramp.js", "onramp_bg.wasm"];
    served.extend(hashed.iter().map(|s| s.as_str()));
    for file in served {
        let path = dist.join(file);
        run(Command::new("gzip").args(["-9", "-n", "-k", "-f"]).arg(&path))?;
        run(Command::new("brotli").args(["-q", "11", "-k", "-f"]).arg(&path))?;
    }
    Ok(())
}

fn is_hashed(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(_), Some(hash)) = (parts.next(), parts.next()) else { return false };
    hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

fn collector_binary() -> PathBuf {
    root().join("target/release/onramp-collector")
}

fn demo() -> Result {
    setup()?;
    build()?;
    let listen = std::env::var("ONRAMP_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let data = root().join(".onramp");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    println!();
    println!("  demo page:  http://{listen}/demo/");
    println!("  dashboard:  http://{listen}/dashboard/#token=rt_demo");
    println!("  plan editor: http://{listen}/dashboard/plan.html#editor=et_demo");
    println!("  events are stored in {}", data.join("demo.db").display());
    println!("  (Ctrl-C to stop)");
    println!();
    run(Command::new(collector_binary()).args(["--listen", &listen, "--db"]).arg(data.join("demo.db")))
}

fn test() -> Result {
    setup()?;
    build()?;
    // A full test run is not an edit loop: incremental caches would add gigabytes to a fresh
    // clone's disk use (a CI machine ran out) for no gain. A caller's own setting wins.
    let incremental = std::env::var("CARGO_INCREMENTAL").unwrap_or_else(|_| "0".into());
    run(cargo().args(["test", "--workspace"]).env("CARGO_INCREMENTAL", &incremental))?;
    // The core's tests again, compiled to wasm and run in headless Chromium by
    // wasm-bindgen-test-runner (the runner is set in .cargo/config.toml). Its limits (5 s for
    // chromedriver to answer, 20 s for the suite) suit a quiet machine; one run at load 5-6 on
    // this 2-core box exited 1 without a recorded cause, so a slow start must not be one.
    run(cargo()
        .args(["test", "--target", "wasm32-unknown-unknown", "-p", "onramp", "--lib"])
        .env("CARGO_INCREMENTAL", &incremental)
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env("WASM_BINDGEN_TEST_DRIVER_TIMEOUT", "60")
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300"))?;
    // Node tests: tests/*.test.mjs (the plan schema with a JSON Schema validator) and the
    // browser tests in tests/e2e/.
    let mut tests: Vec<PathBuf> = Vec::new();
    for dir in ["tests", "tests/e2e"] {
        let entries = std::fs::read_dir(root().join(dir)).map_err(|e| format!("{dir}: {e}"))?;
        tests.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.to_string_lossy().ends_with(".test.mjs")));
    }
    tests.sort();
    let mut node = Command::new("node");
    node.arg("--test").arg("--test-concurrency=1").args(&tests).current_dir(root());
    node.env("ONRAMP_COLLECTOR_BIN", collector_binary());
    run(&mut node)
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "setup" => setup(),
        "build" => build(),
        "demo" => demo(),
        "test" => test(),
        "bench" => bench::bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => Err("usage: cargo xtask setup|build|demo|test|bench".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}
