//! Several vaults at once: the fleet file and the operations an operator
//! runs across vaults (`rekey start --vault a --vault b`, `rekey status
//! --all`).
//!
//! The fleet file (`rekey.toml` by default) names each vault:
//!
//! ```toml
//! [[vault]]
//! name = "berlin"                        # [a-z0-9_-], 1 to 64 characters
//! db = "postgres://rekey@db1/berlin"     # as --db takes it
//! key_dir = "/var/lib/rekey/berlin/keys" # as --key-dir takes it
//! ```
//!
//! Relative SQLite paths and key directories are relative to the working
//! directory, as `--db` and `--key-dir` are. Loading refuses, naming the
//! entry: a duplicate name, a bad name, an unknown field, and two entries
//! that name the same database (compared without user, password and
//! query; `localhost` is `127.0.0.1`; a missing port is the backend's
//! default; SQLite paths are compared canonicalized). [`Fleet::open`] then
//! opens every selected vault before anything is done, so an unreachable
//! vault or one of a newer schema stops the command with nothing done
//! anywhere.
//!
//! # Starting several vaults
//!
//! [`Fleet::start`] is all or nothing up to the code word: preflight runs
//! on every selected vault that has not started; if any blocks (or cannot
//! be checked), no vault starts and each is reported with what happened
//! to it. Otherwise each vault starts in turn, from its own transaction; a
//! vault whose start fails (the database went away after preflight) does
//! not undo or hold back the others, and is reported as failed: run the
//! same command again, since a vault already started resumes or is
//! reported as started.

use crate::engine::{Engine, Names, ServerProgress};
use crate::error::EngineError;
use rekey_core::Target;
use rekey_core::lifecycle::code_word_accepted;
use rekey_core::model::Phase;
use rekey_core::report::{
    FleetStartReport, FleetStatusReport, FleetTotals, StartReport, VaultStart, VaultStartOutcome,
    VaultStatus,
};
use rekey_keys::KeyDir;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The fleet file's default name, in the working directory.
pub const DEFAULT_FLEET_FILE: &str = "rekey.toml";

/// One vault of the fleet file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetEntry {
    /// Its name (`--vault NAME`, `/v1/vaults/NAME/…`).
    pub name: String,
    /// The database URL, as `--db` takes it.
    pub db: String,
    /// The key directory, as `--key-dir` takes it.
    pub key_dir: PathBuf,
}

/// A loaded, checked fleet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its vaults, in file order.
    pub vaults: Vec<FleetEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    vault: Vec<FleetEntry>,
}

pub use rekey_core::ids::valid_vault_name;

impl FleetFile {
    /// Reads and checks the fleet file at `path`.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::FleetFile {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "it does not exist (write one, or name it with --fleet)".to_owned()
            } else {
                format!("it cannot be read: {e}")
            },
        })?;
        Self::parse(&text, path)
    }

    /// Checks the text of a fleet file (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::FleetFile {
            path: path.to_path_buf(),
            reason,
        };
        let doc: Doc = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if doc.vault.is_empty() {
            return Err(bad("it names no vault (add a [[vault]] table)".to_owned()));
        }
        let mut seen: Vec<(&str, String)> = Vec::new();
        for v in &doc.vault {
            if !valid_vault_name(&v.name) {
                return Err(bad(format!(
                    "vault {:?}: a name is 1 to 64 of a-z, 0-9, _ and -",
                    v.name
                )));
            }
            if v.db.trim().is_empty() {
                return Err(bad(format!("vault {}: `db` is empty", v.name)));
            }
            if seen.iter().any(|(n, _)| *n == v.name) {
                return Err(bad(format!("vault {} is named twice", v.name)));
            }
            let place = database_identity(&v.db);
            if let Some((other, _)) = seen.iter().find(|(_, p)| *p == place) {
                return Err(bad(format!(
                    "vaults {other} and {} name the same database ({})",
                    v.name,
                    rekey_storage::redact_url(&v.db)
                )));
            }
            seen.push((&v.name, place));
        }
        Ok(Self {
            path: path.to_path_buf(),
            vaults: doc.vault,
        })
    }

    /// The vaults `--vault NAME…` or `--all` select, in file order, each
    /// once. Names not in the file are refused, naming them.
    pub fn select(&self, names: &[String], all: bool) -> Result<Vec<FleetEntry>, EngineError> {
        if let Some(unknown) = names
            .iter()
            .find(|n| !self.vaults.iter().any(|v| &v.name == *n))
        {
            return Err(EngineError::FleetFile {
                path: self.path.clone(),
                reason: format!(
                    "it has no vault named {unknown:?} (it has {})",
                    self.names().join(", ")
                ),
            });
        }
        Ok(self
            .vaults
            .iter()
            .filter(|v| all || names.contains(&v.name))
            .cloned()
            .collect())
    }

    /// The names, in file order.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.vaults.iter().map(|v| v.name.as_str()).collect()
    }
}

/// What identifies the database a URL reaches, for telling two entries
/// apart: the backend, host, port and database, without credentials or
/// options.
fn database_identity(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    if scheme.starts_with("sqlite") || url.starts_with("sqlite:") {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(rest)
            .split(['?', '#'])
            .next()
            .unwrap_or("");
        // An existing file canonicalized; a file still to be made, its
        // path made absolute and `.`/`..` resolved by hand.
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| {
            let mut out = std::env::current_dir().unwrap_or_default();
            for part in Path::new(path).components() {
                match part {
                    std::path::Component::CurDir => {}
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    other => out.push(other),
                }
            }
            out
        });
        return format!("sqlite:{}", canonical.display());
    }
    let family = match scheme.as_str() {
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        other => other,
    };
    let without_user = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (authority, database) = without_user.split_once('/').unwrap_or((without_user, ""));
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_owned(), p.to_owned())
        }
        _ => (authority.clone(), String::new()),
    };
    let host = if host == "localhost" || host == "[::1]" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    let port = if port.is_empty() {
        match family {
            "postgres" => "5432".to_owned(),
            "mysql" => "3306".to_owned(),
            _ => port,
        }
    } else {
        port
    };
    format!("{family}://{host}:{port}/{database}")
}

/// How a fleet command uses the vaults' key directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetKeys {
    /// Create a missing key directory (start writes keys).
    Create,
    /// Use it when it is there.
    IfPresent,
}

/// The selected vaults, each opened.
#[derive(Debug)]
pub struct Fleet {
    members: Vec<(FleetEntry, Engine)>,
}

impl Fleet {
    /// Opens every entry (all before any is used): the first that cannot
    /// be opened (unreachable, a newer schema, a key directory that cannot
    /// be made) is the error, naming it.
    pub async fn open(
        entries: Vec<FleetEntry>,
        keys: FleetKeys,
        actor: &str,
    ) -> Result<Self, EngineError> {
        let mut members = Vec::with_capacity(entries.len());
        for entry in entries {
            let in_vault = |e: EngineError| EngineError::InVault {
                name: entry.name.clone(),
                source: Box::new(e),
            };
            let dir = match keys {
                FleetKeys::Create => {
                    Some(KeyDir::open(&entry.key_dir).map_err(|e| in_vault(e.into()))?)
                }
                FleetKeys::IfPresent => KeyDir::existing(&entry.key_dir).ok(),
            };
            let engine = Engine::open(&entry.db, dir, actor.to_owned())
                .await
                .map_err(in_vault)?;
            members.push((entry, engine));
        }
        Ok(Self { members })
    }

    /// The vaults, in fleet-file order.
    pub fn members(&self) -> impl Iterator<Item = (&FleetEntry, &Engine)> {
        self.members.iter().map(|(e, g)| (e, g))
    }

    /// The first half of a fleet start: where each vault is, and
    /// preflight on every vault that would start fresh (reads only). The
    /// caller asks for the code word when [`StartPlan::fresh`] is not
    /// empty and nothing holds the fleet back, then calls
    /// [`StartPlan::start`].
    pub async fn plan_start(&self, target: Option<Target>) -> StartPlan<'_> {
        let mut plan: Vec<Plan> = Vec::with_capacity(self.members.len());
        for (entry, engine) in &self.members {
            plan.push(Plan::of(&entry.name, &with_target(engine, target)).await);
        }
        StartPlan {
            fleet: self,
            target,
            plan,
        }
    }

    /// Every vault's status (names as `names` says), and the totals. A
    /// vault whose status cannot be read is listed with its error and left
    /// out of the totals.
    pub async fn status(&self, names: Names) -> FleetStatusReport {
        let mut vaults = Vec::with_capacity(self.members.len());
        let mut total = FleetTotals::default();
        for (entry, engine) in &self.members {
            match engine.status(names).await {
                Ok(s) => {
                    total.add(&s);
                    vaults.push(VaultStatus {
                        vault: entry.name.clone(),
                        status: Some(s),
                        error: None,
                    });
                }
                Err(e) => vaults.push(VaultStatus {
                    vault: entry.name.clone(),
                    status: None,
                    error: Some(e.to_string()),
                }),
            }
        }
        total.finish();
        FleetStatusReport { vaults, total }
    }
}

fn with_target(engine: &Engine, target: Option<Target>) -> Engine {
    match target {
        Some(t) => engine.clone().with_target(t),
        None => engine.clone(),
    }
}

/// A fleet start, planned: see [`Fleet::plan_start`].
#[derive(Debug)]
pub struct StartPlan<'f> {
    fleet: &'f Fleet,
    target: Option<Target>,
    plan: Vec<Plan>,
}

impl StartPlan<'_> {
    /// The vaults that block or cannot be checked: while there is one,
    /// [`StartPlan::start`] starts nothing.
    #[must_use]
    pub fn holding_back(&self) -> Vec<String> {
        self.plan
            .iter()
            .filter(|p| p.holds_back())
            .map(|p| p.name.clone())
            .collect()
    }

    /// The vaults that start fresh (and so need the code word).
    #[must_use]
    pub fn fresh(&self) -> Vec<String> {
        self.plan
            .iter()
            .filter(|p| matches!(p.step, Step::Fresh))
            .map(|p| p.name.clone())
            .collect()
    }

    /// Starts (or resumes) every vault, unless one holds the fleet back:
    /// then nothing starts and each vault is reported with what happened
    /// to it. `code_word` is checked before any vault starts (when one
    /// starts fresh). `progress(vault, service, done, total)` follows each
    /// server phase.
    pub async fn start(
        self,
        code_word: &str,
        progress: &(dyn Fn(&str, &str, usize, usize) + Sync),
    ) -> Result<FleetStartReport, EngineError> {
        let holding_back = self.holding_back();
        if !holding_back.is_empty() {
            let vaults = self
                .plan
                .into_iter()
                .map(|p| p.without_starting(&holding_back))
                .collect();
            return Ok(FleetStartReport {
                started_any: false,
                vaults,
            });
        }
        if !self.fresh().is_empty() {
            code_word_accepted(code_word)?;
        }
        let mut vaults = Vec::with_capacity(self.plan.len());
        let mut started_any = false;
        for (p, (entry, engine)) in self.plan.into_iter().zip(&self.fleet.members) {
            let engine = with_target(engine, self.target);
            let name = entry.name.clone();
            let outcome = match p.step {
                Step::Fresh | Step::Resume => {
                    let each = |service: &str, done: usize, total: usize| {
                        progress(&name, service, done, total);
                    };
                    let per_vault: ServerProgress<'_> = &each;
                    match engine.start(code_word, per_vault).await {
                        Ok(report) => {
                            started_any = true;
                            started_outcome(report)
                        }
                        Err(e) => VaultStartOutcome::Failed {
                            error: e.to_string(),
                        },
                    }
                }
                Step::Running(phase) => VaultStartOutcome::AlreadyStarted { phase },
                Step::Completed => VaultStartOutcome::Completed,
                Step::Blocked(_) | Step::Refused(_) => {
                    return Err(EngineError::Internal(
                        "a vault that holds the fleet back reached the start",
                    ));
                }
            };
            vaults.push(VaultStart {
                vault: name,
                outcome,
            });
        }
        Ok(FleetStartReport {
            started_any,
            vaults,
        })
    }
}

fn started_outcome(report: StartReport) -> VaultStartOutcome {
    if report.resumed {
        VaultStartOutcome::Resumed { report }
    } else {
        VaultStartOutcome::Started { report }
    }
}

/// What one vault's start will be.
#[derive(Debug)]
struct Plan {
    name: String,
    step: Step,
}

#[derive(Debug)]
enum Step {
    /// In the legacy phase, preflight passes: starts with the code word.
    Fresh,
    /// In the server phase or waiting for certificates: resumes.
    Resume,
    /// Past the server phase: nothing to start.
    Running(Phase),
    /// Done: nothing to start.
    Completed,
    /// Preflight blocks: these checks.
    Blocked(Vec<String>),
    /// Cannot be checked or started at all (the error).
    Refused(String),
}

impl Plan {
    async fn of(name: &str, engine: &Engine) -> Self {
        let step = match Self::step(engine).await {
            Ok(s) => s,
            Err(e) => Step::Refused(e.to_string()),
        };
        Self {
            name: name.to_owned(),
            step,
        }
    }

    async fn step(engine: &Engine) -> Result<Step, EngineError> {
        let (_, row) = engine.lifecycle().await?;
        if let Some(asked) = engine
            .asked_target()
            .filter(|t| row.run.is_some() && *t != row.target)
        {
            return Err(EngineError::TargetChanged {
                run: row.target,
                asked,
            });
        }
        Ok(match row.phase {
            Phase::Legacy => {
                let report = engine.preflight().await?;
                let blocking: Vec<String> =
                    report.blocking().into_iter().map(str::to_owned).collect();
                if blocking.is_empty() {
                    Step::Fresh
                } else {
                    Step::Blocked(blocking)
                }
            }
            Phase::ServerPhase | Phase::AwaitingCertificates => Step::Resume,
            Phase::Completed => Step::Completed,
            p @ (Phase::UserPhase | Phase::Finalizing) => Step::Running(p),
        })
    }

    fn holds_back(&self) -> bool {
        matches!(self.step, Step::Blocked(_) | Step::Refused(_))
    }

    /// The report of a vault when the fleet did not start.
    fn without_starting(self, holding_back: &[String]) -> VaultStart {
        let outcome = match self.step {
            Step::Blocked(checks) => VaultStartOutcome::Blocked { checks },
            Step::Refused(error) => VaultStartOutcome::Failed { error },
            Step::Running(phase) => VaultStartOutcome::AlreadyStarted { phase },
            Step::Completed => VaultStartOutcome::Completed,
            Step::Fresh | Step::Resume => VaultStartOutcome::HeldBack {
                by: holding_back.to_vec(),
            },
        };
        VaultStart {
            vault: self.name,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FleetFile, String> {
        FleetFile::parse(text, Path::new("rekey.toml")).map_err(|e| e.to_string())
    }

    const TWO: &str = r#"
[[vault]]
name = "berlin"
db = "postgres://rekey:secret@db1/berlin"
key_dir = "keys/berlin"

[[vault]]
name = "paris"
db = "postgres://rekey@db1/paris"
key_dir = "keys/paris"
"#;

    #[test]
    fn a_fleet_file_names_its_vaults_in_order() {
        let f = parse(TWO).unwrap();
        assert_eq!(f.names(), ["berlin", "paris"]);
        assert_eq!(f.vaults[1].key_dir, PathBuf::from("keys/paris"));
        let some = f.select(&["paris".into()], false).unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].name, "paris");
        assert_eq!(f.select(&[], true).unwrap().len(), 2);
        let unknown = f.select(&["rome".into()], false).unwrap_err().to_string();
        assert!(
            unknown.contains("\"rome\"") && unknown.contains("berlin, paris"),
            "{unknown}"
        );
    }

    #[test]
    fn bad_fleet_files_are_refused_naming_the_entry() {
        let dup = TWO.replace("\"paris\"", "\"berlin\"");
        assert!(
            parse(&dup)
                .unwrap_err()
                .contains("vault berlin is named twice")
        );
        let same_db = TWO.replace(
            "postgres://rekey@db1/paris",
            "postgresql://other@DB1:5432/berlin?sslmode=require",
        );
        let e = parse(&same_db).unwrap_err();
        assert!(e.contains("berlin and paris name the same database"), "{e}");
        assert!(!e.contains("secret"), "a password reached a message: {e}");
        assert!(
            parse(&TWO.replace("\"paris\"", "\"Paris!\""))
                .unwrap_err()
                .contains("\"Paris!\"")
        );
        assert!(
            parse(&TWO.replace(
                "key_dir = \"keys/paris\"",
                "key_dir = \"k\"\nkeydir = \"x\""
            ))
            .unwrap_err()
            .contains("unknown field")
        );
        assert!(parse("").unwrap_err().contains("names no vault"));
        assert!(
            parse("[[vault]]\nname = \"a\"\n")
                .unwrap_err()
                .contains("missing field")
        );
    }

    #[test]
    fn database_identity_ignores_credentials_options_and_default_ports() {
        assert_eq!(
            database_identity("postgres://a:b@localhost/v?sslmode=disable"),
            database_identity("postgresql://127.0.0.1:5432/v")
        );
        assert_ne!(
            database_identity("postgres://127.0.0.1/v"),
            database_identity("postgres://127.0.0.1/w")
        );
        assert_ne!(
            database_identity("postgres://127.0.0.1/v"),
            database_identity("mysql://127.0.0.1/v")
        );
        assert_eq!(
            database_identity("sqlite://./a.db?mode=rwc"),
            database_identity("sqlite:a.db")
        );
    }

    #[test]
    fn vault_names_are_path_segments() {
        assert!(valid_vault_name("site-1_a"));
        for bad in ["", "A", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_vault_name(bad), "{bad:?}");
        }
    }
}
