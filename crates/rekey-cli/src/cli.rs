//! Arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// rekey: move an end-to-end-encrypted vault from RSA to P-256 keys,
/// user by user, without losing a record.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The vault: sqlite://FILE, postgres://…, mysql://…
    #[arg(
        long,
        global = true,
        env = "REKEY_DATABASE_URL",
        default_value = rekey_server::DEFAULT_DATABASE_URL
    )]
    pub(crate) db: String,
    /// The server's key directory (certificate private keys).
    #[arg(
        long,
        global = true,
        env = "REKEY_KEY_DIR",
        default_value = rekey_server::DEFAULT_KEY_DIR
    )]
    pub(crate) key_dir: PathBuf,
    /// The fleet file naming several vaults (`[[vault]]` tables with
    /// `name`, `db`, `key_dir`): read only with --vault or --all.
    #[arg(
        long,
        global = true,
        env = "REKEY_FLEET",
        default_value = rekey_engine::DEFAULT_FLEET_FILE
    )]
    pub(crate) fleet: PathBuf,
    /// Work on this vault of the fleet file instead of --db (repeatable
    /// where a command can work on several vaults).
    #[arg(long = "vault", global = true, value_name = "NAME")]
    pub(crate) vaults: Vec<String>,
    /// Work on every vault of the fleet file.
    #[arg(long, global = true, conflicts_with = "vaults")]
    pub(crate) all: bool,
    /// Output for people (text) or scripts (json).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Whether --db or --key-dir was given on the command line (they do
    /// not mix with --vault/--all).
    #[arg(skip)]
    pub(crate) place_given: bool,
}

impl Cli {
    /// Parses the command line, noting whether --db or --key-dir was
    /// typed.
    pub(crate) fn parse_args() -> Self {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let matches = Self::command().get_matches();
        let mut cli = match Self::from_arg_matches(&matches) {
            Ok(c) => c,
            Err(e) => e.exit(),
        };
        let typed = |id: &str| {
            // The subcommand's matches hold global arguments too.
            let mut m = &matches;
            while let Some((_, sub)) = m.subcommand() {
                m = sub;
            }
            m.value_source(id) == Some(ValueSource::CommandLine)
                || matches.value_source(id) == Some(ValueSource::CommandLine)
        };
        cli.place_given = typed("db") || typed("key_dir");
        cli
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the vault schema (or upgrade an older one).
    Init,
    /// The demo vault: `rekey demo` runs the whole migration on a fresh
    /// SQLite file; `rekey demo seed` and `rekey demo login-all` do parts.
    Demo(DemoArgs),
    /// Run the preparation checks (exit 0 pass, 1 warn, 2 block).
    Preflight {
        /// The target `rekey start --target-scheme` will be given (the
        /// disk-space estimate depends on it).
        #[arg(long, value_parser = parse_target, default_value = "hpke-p256")]
        target_scheme: rekey_core::Target,
    },
    /// Certificate keys: back up, verify a backup, import from a backup.
    /// The passphrase comes from --passphrase-file, REKEY_BACKUP_PASSPHRASE,
    /// or a prompt (typed twice for a new backup).
    Cert {
        #[command(subcommand)]
        action: CertAction,
        /// Read the passphrase from this file.
        #[arg(long, global = true)]
        passphrase_file: Option<PathBuf>,
    },
    /// Directory-sync profiles.
    Directory {
        #[command(subcommand)]
        action: DirectoryAction,
    },
    /// Offline and mobile devices.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Users that can never log in (deactivated or deleted): purge or
    /// restore them before the start, as preflight asks.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Start the migration: asks for the code word `Start`, then migrates
    /// the keys the server holds.
    Start {
        /// The code word, for scripts (otherwise prompted).
        #[arg(long)]
        code_word: Option<String>,
        /// What the migration moves keys to: `hpke-p256` (the default),
        /// `hpke-p521`, or `hpke-mlkem768-x25519` (post-quantum hybrid:
        /// X-Wing grants, about 9 times the storage per grant). Chosen once
        /// per run.
        #[arg(long, value_parser = parse_target)]
        target_scheme: Option<rekey_core::Target>,
    },
    /// Phase, progress, rate and estimate, who is pending.
    Status {
        /// List every pending principal, not just the first ones.
        #[arg(long)]
        all_pending: bool,
        /// Redraw every 2 seconds until interrupted (or the migration completes).
        #[arg(long)]
        watch: bool,
    },
    /// Act as a user's client: unlock, build the bundle, submit.
    Login {
        /// The user's name.
        #[arg(long)]
        user: String,
        /// Go through a `rekey serve` at this URL instead of the database.
        #[arg(long)]
        server: Option<String>,
        /// With --server: the demo credentials file (user ids, vault id).
        #[arg(long, default_value = "rekey-demo.credentials.json")]
        credentials: PathBuf,
        /// The password (prompted if absent; also REKEY_PASSWORD).
        #[arg(long, env = "REKEY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Delete the legacy keys and lift read-only mode (nobody may be
    /// pending). Resumable.
    Finalize,
    /// Return the vault to its exact legacy state.
    Abort {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Serve the HTTP API clients use during the migration, the status page
    /// and metrics (the `rekey-server` binary takes the same options).
    Serve(rekey_server::ServeArgs),
    /// Resolve a grant a client could not migrate: `reshared` (the record
    /// was shared again with a new grant) or `written_off` (its loss is
    /// accepted). Audited.
    Resolve {
        /// The grant's id (`rekey status` counts them; preflight and the
        /// audit log name them).
        grant: String,
        /// `reshared` or `written_off`.
        resolution: String,
    },
    /// Accept that a member of a migrated role will not confirm it (it will
    /// not log in again, or its client cannot hand in receipts), so that
    /// finalize stops waiting for it. Audited. Never for a member whose
    /// client reported that the role does not open: abort instead.
    WaiveRole {
        /// The role's name.
        #[arg(long)]
        role: String,
        /// The member's name.
        #[arg(long)]
        member: String,
    },
    /// Demo vaults: every demo user unlocks and reads exactly what it should.
    Verify {
        /// The demo credentials file.
        #[arg(long, default_value = "rekey-demo.credentials.json")]
        credentials: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(subcommand)]
    pub(crate) step: Option<DemoStep>,
    #[command(flatten)]
    pub(crate) spec: SpecArgs,
    /// Where the all-in-one demo keeps its vault, keys and credentials
    /// (made afresh each run).
    #[arg(long, default_value = "rekey-demo")]
    pub(crate) dir: PathBuf,
    /// What the all-in-one demo migrates to (as `rekey start
    /// --target-scheme`).
    #[arg(long, value_parser = parse_target, default_value = "hpke-p256")]
    pub(crate) target_scheme: rekey_core::Target,
    /// Then migrate the migrated vault again, to this target (repeatable:
    /// `--then hpke-mlkem768-x25519`), verifying after each migration.
    #[arg(long, value_parser = parse_target)]
    pub(crate) then: Vec<rekey_core::Target>,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct SpecArgs {
    /// Users.
    #[arg(long, global = true, default_value_t = 200)]
    pub(crate) users: usize,
    /// Roles (default: one for every ten users).
    #[arg(long, global = true)]
    pub(crate) roles: Option<usize>,
    /// Records (default: 10 per user).
    #[arg(long, global = true)]
    pub(crate) records: Option<usize>,
    /// RSA modulus size of the legacy keys.
    #[arg(long, global = true, default_value_t = 2048, value_parser = parse_bits)]
    pub(crate) rsa_bits: usize,
    /// Seed for every random choice (not the RSA keys).
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Seed the problems preflight must catch.
    #[arg(long, global = true)]
    pub(crate) with_problems: bool,
    /// The simulated clients' password KDF (Argon2id): `recommended` (19
    /// MiB, 2 passes: OWASP's setting) or `light` (4 MiB, 1 pass: for
    /// benchmark vaults only).
    #[arg(long, global = true, value_enum, default_value_t = KdfChoice::Recommended)]
    pub(crate) kdf: KdfChoice,
    /// Reuse RSA keys from this file (and add new ones to it).
    #[arg(long, global = true)]
    pub(crate) key_cache: Option<PathBuf>,
    /// At most this many distinct RSA keys, repeated for the other
    /// principals (large benchmark vaults only; never realistic).
    #[arg(long, global = true, hide = true)]
    pub(crate) distinct_keys: Option<usize>,
    /// Simulated clients at once.
    #[arg(long, global = true, default_value_t = 4)]
    pub(crate) concurrency: usize,
}

/// The demo's password-KDF settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KdfChoice {
    /// OWASP's recommended Argon2id setting.
    Recommended,
    /// Light, for benchmark vaults.
    Light,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DemoStep {
    /// Seed a realistic legacy vault into --db.
    Seed {
        /// Where to write the demo users' passwords.
        #[arg(long, default_value = "rekey-demo.credentials.json")]
        credentials: PathBuf,
    },
    /// Every demo user logs in and migrates.
    LoginAll {
        /// The demo credentials file.
        #[arg(long, default_value = "rekey-demo.credentials.json")]
        credentials: PathBuf,
        /// Go through a `rekey serve` at this URL instead of the database.
        /// Repeat for several servers of one vault: requests take them in
        /// turn, and move on to the next when one does not answer.
        #[arg(long = "server", value_name = "URL")]
        servers: Vec<String>,
    },
}

fn parse_target(s: &str) -> Result<rekey_core::Target, String> {
    rekey_core::Target::from_name(s)
        .ok_or_else(|| "must be hpke-p256, hpke-p521 or hpke-mlkem768-x25519".into())
}

fn parse_bits(s: &str) -> Result<usize, String> {
    match s {
        "2048" => Ok(2048),
        "4096" => Ok(4096),
        _ => Err("must be 2048 or 4096".into()),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertAction {
    /// Write every server-held certificate key to one passphrase-protected file.
    Backup {
        /// The backup file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a backup with its passphrase, against this vault.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
    /// Restore the keys of a backup into --key-dir (on a second server:
    /// at the end of the migration, from the backup made after it).
    Import {
        /// The backup file.
        file: PathBuf,
        /// The server whose key directory this is, as `rekey serve --name`
        /// registers it (default: the host name); the vault's server list
        /// then records the keys it holds.
        #[arg(long, env = "REKEY_SERVER_NAME")]
        server_name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DirectoryAction {
    /// Issue a new token for a profile (shown once; only its hash is kept).
    RenewToken {
        /// The profile's name.
        profile: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserAction {
    /// Delete a deactivated or deleted user's keys, grants and memberships
    /// for good (its row stays, as `purged`). Refused when records would be
    /// left that nobody else can read, unless --force (they are then listed
    /// in the audit log). Audited.
    Purge {
        /// The user's name.
        name: String,
        /// Purge even if records would be left that nobody can read.
        #[arg(long)]
        force: bool,
    },
    /// Make a deactivated or deleted user active again: it logs in and
    /// migrates like the others. Audited.
    Restore {
        /// The user's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceAction {
    /// Accept the loss of a device's unsynchronised changes (audited).
    WriteOff {
        /// The device id.
        device: String,
    },
}
