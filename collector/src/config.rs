//! Collector configuration: which projects exist and where files live.

use std::path::PathBuf;

/// A customer's product. The write key is public (it ships in the page) and is only honoured
/// from the project's allowed origins; the read token is secret and opens the query API.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    pub id: String,
    pub write_key: String,
    pub read_token: String,
    /// Exact origins such as `https://app.example.com`, or `*` for any.
    pub allowed_origins: Vec<String>,
}

impl Project {
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o == origin)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub projects: Vec<Project>,
    /// The demo page and dashboard (`www/` in the repository).
    pub www_dir: PathBuf,
    /// The built SDK bundle (`dist/` after `cargo xtask build`).
    pub dist_dir: PathBuf,
}

impl Config {
    pub fn project_by_write_key(&self, key: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.write_key == key)
    }
    pub fn project_by_read_token(&self, token: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.read_token == token)
    }

    /// The demo project, used when no project is configured so that `onramp-collector` with
    /// no flags just works on a laptop.
    pub fn demo_project() -> Project {
        Project {
            id: "demo".into(),
            write_key: "wk_demo".into(),
            read_token: "rt_demo".into(),
            allowed_origins: vec!["*".into()],
        }
    }

    /// Paths relative to the repository this binary was built from: right for `cargo run`.
    pub fn for_repository() -> Config {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        Config { projects: vec![Config::demo_project()], www_dir: root.join("www"), dist_dir: root.join("dist") }
    }
}
