//! Collector configuration: which projects exist, their limits, and where files live.
//!
//! Projects come from a JSON file (`--config FILE` or `ONRAMP_CONFIG`):
//!
//! ```json
//! {"projects": [{"id": "acme", "writeKey": "wk_acme", "readToken": "rt_secret",
//!                "allowedOrigins": ["https://app.acme.com"]}],
//!  "rateLimit": {"perSecond": 50, "burst": 100}}
//! ```
//!
//! With no file the demo project (`wk_demo` / `rt_demo`, any origin) is served, so the collector
//! with no flags just works on a laptop.
//!
//! # Admin tokens
//!
//! Operations that change or reveal more than reports do (privacy erasure and export, imports,
//! backups, `/metrics` on the public address) need an **admin token**, never the read token a
//! dashboard link carries. A global one (`"adminToken"` at the top of the file, `--admin-token`,
//! `ONRAMP_ADMIN_TOKEN`) is good for every project; a project's own `"adminToken"` only for that
//! project. [`Config::project_for_admin`] and [`Config::is_global_admin`] are the checks every
//! admin route uses.
//!
//! # Editor tokens
//!
//! Changing what every user of the product sees is not reading reports: `PUT /v1/plan`, plan
//! versions, rollback and preview links need one of the project's **editor tokens**
//! (`"editorTokens": {"dana": "et_…"}`, a name per person or tool, so the version history says
//! who published what), or an admin token. The read token never edits.
//! [`Config::editor_for`] is the check.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A customer's product. The write key is public (it ships in the page) and is only honoured
/// from the project's allowed origins; the read token is secret and opens the query API.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    pub id: String,
    pub write_key: String,
    pub read_token: String,
    /// Exact origins such as `https://app.example.com`, or `*` for any.
    pub allowed_origins: Vec<String>,
    /// Opens this project's admin operations (see the module docs); optional.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Raw events older than this many days are deleted (hourly); none when absent.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Signs this project's webhook requests (Standard Webhooks: `whsec_` + base64 of the key).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Identity verification (docs/IDENTITY.md): the secret the customer's backend computes
    /// each user's `userHash` with.
    #[serde(default)]
    pub identity_secret: Option<String>,
    /// What happens to events claiming a user id without a valid `userHash`, when
    /// `identity_secret` is set.
    #[serde(default)]
    pub identity_enforcement: IdentityEnforcement,
    /// Who may change the plan (see the module docs): name → token. The name is what the
    /// version history shows as the author.
    #[serde(default)]
    pub editor_tokens: std::collections::BTreeMap<String, String>,
}

/// Who published a plan version: what kind of token, and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub kind: AuthorKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorKind {
    /// One of the project's editor tokens; the name is its key in `editorTokens`.
    Editor,
    /// The project's or the global admin token.
    Admin,
    /// A plan file the collector was started with (`--plan`); the name is the file.
    File,
}

impl AuthorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorKind::Editor => "editor",
            AuthorKind::Admin => "admin",
            AuthorKind::File => "file",
        }
    }
}

/// See [`Project::identity_enforcement`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityEnforcement {
    /// Refused: 400 naming each such event and `userHash`; nothing of the batch is stored.
    #[default]
    Reject,
    /// Stored without the user id (as the anonymous visitor they provably are).
    Anonymous,
    /// Accepted as claimed: for rolling the hashes out before enforcing them.
    Off,
}

impl Project {
    /// A project with its keys and origins and every optional setting off (no admin token,
    /// retention, webhook signing, identity verification or editors): what `--project` gives.
    pub fn new(id: &str, write_key: &str, read_token: &str, allowed_origins: Vec<String>) -> Project {
        Project {
            id: id.into(),
            write_key: write_key.into(),
            read_token: read_token.into(),
            allowed_origins,
            admin_token: None,
            retention_days: None,
            webhook_secret: None,
            identity_secret: None,
            identity_enforcement: IdentityEnforcement::default(),
            editor_tokens: Default::default(),
        }
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o == origin)
    }
}

/// Requests per write key: a token bucket refilled at `per_second`, holding at most `burst`.
/// Over it the collector answers 429 with `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    /// Generous: a browser sends about one batch a second; this only stops floods.
    fn default() -> RateLimit {
        RateLimit { per_second: 200.0, burst: 400.0 }
    }
}

/// The file's shape.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    projects: Vec<Project>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    admin_token: Option<String>,
}

/// Where a project's start-up plan comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanSource {
    /// `--plan [PROJECT=]FILE`.
    File(PathBuf),
    /// The demo plan compiled into the binary ([`crate::assets::DEMO_PLAN`]), for the demo project.
    Demo,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub projects: Vec<Project>,
    pub rate_limit: RateLimit,
    /// Serve the demo page and dashboard from this directory (`www/` layout) instead of the
    /// copies embedded in the binary.
    pub www_dir: Option<PathBuf>,
    /// Serve the SDK bundle from this directory (`dist/` layout) instead of the embedded one.
    pub dist_dir: Option<PathBuf>,
    /// Plans read at start (project id, source): each project's plan until one is stored.
    pub plan_files: Vec<(String, PlanSource)>,
    /// The global admin token (see the module docs).
    pub admin_token: Option<String>,
    /// Timeouts and the connection cap.
    pub limits: crate::serve::Limits,
    /// `--admin-listen`: probes and metrics on an address of their own (then `/metrics` is not
    /// served on the public one).
    pub admin_listen: Option<String>,
}

impl Default for Config {
    /// The demo project with its plan, and every file served from the binary.
    fn default() -> Config {
        Config {
            projects: vec![Config::demo_project()],
            rate_limit: RateLimit::default(),
            www_dir: None,
            dist_dir: None,
            plan_files: vec![("demo".into(), PlanSource::Demo)],
            admin_token: None,
            limits: crate::serve::Limits::default(),
            admin_listen: None,
        }
    }
}

impl Config {
    pub fn project_by_write_key(&self, key: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.write_key == key)
    }
    pub fn project_by_read_token(&self, token: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.read_token == token)
    }
    pub fn project_by_admin_token(&self, token: &str) -> Option<&Project> {
        self.projects.iter().find(|p| !token.is_empty() && p.admin_token.as_deref() == Some(token))
    }

    /// The demo project, used when no project is configured so that `onramp-collector` with
    /// no flags just works on a laptop.
    pub fn demo_project() -> Project {
        Project {
            // The demo's data is for playing with; real projects set their own in the config.
            admin_token: Some("at_demo".into()),
            identity_enforcement: IdentityEnforcement::Reject,
            editor_tokens: [("demo".to_string(), "et_demo".to_string())].into(),
            ..Project::new("demo", "wk_demo", "rt_demo", vec!["*".into()])
        }
    }

    /// Whether `token` is the global admin token.
    pub fn is_global_admin(&self, token: &str) -> bool {
        self.admin_token.as_deref().is_some_and(|t| !t.is_empty() && t == token)
    }

    /// The project `id` if `token` opens its admin operations (its own admin token, or the
    /// global one).
    pub fn project_for_admin(&self, id: &str, token: &str) -> Option<&Project> {
        let project = self.projects.iter().find(|p| p.id == id)?;
        let own = project.admin_token.as_deref().is_some_and(|t| !t.is_empty() && t == token);
        (own || self.is_global_admin(token)).then_some(project)
    }

    /// Who `token` is when it may edit the plan of project `id` (or, with `id` `None`, of the
    /// project whose editor or admin token it is, or the only project): one of the project's
    /// editor tokens, its admin token, or the global admin token.
    pub fn editor_for(&self, id: Option<&str>, token: &str) -> Option<(&Project, Author)> {
        if token.is_empty() {
            return None;
        }
        let candidates: Vec<&Project> = match id {
            Some(id) => self.projects.iter().filter(|p| p.id == id).collect(),
            None => self.projects.iter().collect(),
        };
        for project in &candidates {
            if let Some((name, _)) = project.editor_tokens.iter().find(|(_, t)| t.as_str() == token) {
                return Some((project, Author { kind: AuthorKind::Editor, name: name.clone() }));
            }
            if project.admin_token.as_deref() == Some(token) {
                return Some((project, Author { kind: AuthorKind::Admin, name: "project admin token".into() }));
            }
        }
        match (self.is_global_admin(token), candidates.as_slice()) {
            (true, [only]) => Some((only, Author { kind: AuthorKind::Admin, name: "global admin token".into() })),
            _ => None,
        }
    }

    /// Replaces the projects (and the rate limit, if given) with those of a JSON config text.
    pub fn apply_json(&mut self, text: &str) -> Result<(), String> {
        let file: ConfigFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.projects.is_empty() {
            return Err("projects: give at least one project".into());
        }
        for (i, p) in file.projects.iter().enumerate() {
            if p.id.is_empty() || p.write_key.is_empty() || p.read_token.is_empty() {
                return Err(format!("projects[{i}]: id, writeKey and readToken must not be empty"));
            }
            if file.projects[..i].iter().any(|q| q.write_key == p.write_key || q.read_token == p.read_token) {
                return Err(format!("projects[{i}]: writeKey and readToken must be unique"));
            }
            for (name, token) in &p.editor_tokens {
                let reused = token.is_empty()
                    || *token == p.read_token
                    || *token == p.write_key
                    || file.projects[..i].iter().any(|q| q.editor_tokens.values().any(|t| t == token));
                if name.is_empty() || reused {
                    return Err(format!(
                        "projects[{i}].editorTokens.{name}: give a non-empty name and a token of its own (not the read token or write key, not another project's)"
                    ));
                }
            }
        }
        if let Some(limit) = file.rate_limit {
            if !(limit.per_second > 0.0 && limit.burst >= 1.0) {
                return Err("rateLimit: perSecond must be > 0 and burst >= 1".into());
            }
            self.rate_limit = limit;
        }
        if file.admin_token.is_some() {
            self.admin_token = file.admin_token;
        }
        self.projects = file.projects;
        Ok(())
    }

    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.apply_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether any project accepts this origin (for preflights, which carry no write key).
    pub fn any_allows_origin(&self, origin: &str) -> bool {
        self.projects.iter().any(|p| p.allows_origin(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_projects_and_limits_from_json() {
        let mut c = Config::default();
        c.apply_json(
            r#"{"projects":[{"id":"a","writeKey":"wk_a","readToken":"rt_a","allowedOrigins":["https://a.test"]}],
                "rateLimit":{"perSecond":2,"burst":3}}"#,
        )
        .expect("valid");
        assert_eq!(c.projects.len(), 1);
        assert!(c.project_by_write_key("wk_a").is_some_and(|p| p.allows_origin("https://a.test")));
        assert!(!c.any_allows_origin("https://evil.test"));
        assert_eq!(c.rate_limit, RateLimit { per_second: 2.0, burst: 3.0 });
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let mut c = Config::default();
        assert!(c.apply_json(r#"{"projects":[]}"#).expect_err("empty").contains("at least one"));
        let dup = r#"{"projects":[{"id":"a","writeKey":"k","readToken":"r1","allowedOrigins":[]},
                                  {"id":"b","writeKey":"k","readToken":"r2","allowedOrigins":[]}]}"#;
        assert!(c.apply_json(dup).expect_err("dup").contains("unique"));
        assert!(c.apply_json(r#"{"projects":[{"id":"a"}]}"#).is_err());
        assert_eq!(c.projects, vec![Config::demo_project()], "unchanged after errors");
        let same = r#"{"projects":[{"id":"a","writeKey":"k","readToken":"r","allowedOrigins":[],"editorTokens":{"pm":"r"}}]}"#;
        assert!(c.apply_json(same).expect_err("editor = read").contains("editorTokens.pm"));
    }

    #[test]
    fn editor_tokens_open_their_project_only_and_name_the_author() {
        let mut c = Config::default();
        c.apply_json(
            r#"{"projects":[{"id":"a","writeKey":"wa","readToken":"ra","allowedOrigins":[],"editorTokens":{"dana":"ea"},"adminToken":"aa"},
                            {"id":"b","writeKey":"wb","readToken":"rb","allowedOrigins":[],"editorTokens":{"sam":"eb"}}],
                "adminToken":"global"}"#,
        )
        .expect("valid");
        let (p, who) = c.editor_for(None, "ea").expect("dana edits a");
        assert_eq!((p.id.as_str(), who.kind, who.name.as_str()), ("a", AuthorKind::Editor, "dana"));
        assert!(c.editor_for(Some("b"), "ea").is_none(), "a's editor does not edit b");
        assert!(c.editor_for(None, "ra").is_none(), "the read token never edits");
        assert_eq!(c.editor_for(None, "aa").map(|(p, a)| (p.id.clone(), a.kind)), Some(("a".into(), AuthorKind::Admin)));
        assert!(c.editor_for(None, "global").is_none(), "which project? the global token must name one");
        assert_eq!(c.editor_for(Some("b"), "global").map(|(p, _)| p.id.clone()), Some("b".into()));
        assert!(c.editor_for(None, "").is_none());
    }
}
