//! Several `rekey serve` on one vault (issue #30): three servers on
//! loopback ports, `rekey demo login-all --server A --server B --server C`
//! spreading its requests over them, one server killed with SIGKILL once
//! some but not all users have migrated, and not restarted. The clients
//! move on to the two left; afterwards finalize and verify pass and the
//! ledger (tests/support/ledger.rs) finds nothing lost, corrupt or
//! duplicated, every principal in exactly one applied bundle.
//!
//! Also checked on the way: every server registers itself in the vault's
//! server list, a session opened on one server is taken by the others
//! (sessions are checked with the vault's key, not the process's), and
//! every server took client requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use rekey_client::{HttpClient, MigrationApi};
use rekey_core::auth::LoginAuthenticator;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::ledger::{check_completed, snapshot};
use support::{Backend, Guard, Rekey, VaultDb, temp};

const TOKEN: &str = "servers-test-admin-token-0123456789";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `rekey serve` on `port`, registered as `name` (the host name when
/// `None`) in the vault's server list; returns once it answers (it binds
/// before its first heartbeat, and serves after it).
fn serve(rk: &Rekey, port: u16, name: Option<&str>) -> Guard {
    let bind = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--bind", &bind];
    if let Some(n) = name {
        args.extend(["--name", n]);
    }
    let server = Guard(
        rk.command(&args)
            .env("REKEY_ADMIN_TOKEN", TOKEN)
            .env_remove("REKEY_SERVER_NAME")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    support::wait_for_port(port);
    let health = get(port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    server
}

/// The whole answer (status line, headers, body) to `GET path`.
fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = support::free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// Client requests (login, package, bundle, role checks and receipts, the
/// KDF parameters) this server has answered, by its `/metrics`.
fn client_requests(port: u16) -> u64 {
    let text = get(port, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.lines()
        .filter(|l| l.starts_with("rekey_http_request_duration_seconds_count{"))
        .filter(|l| {
            ["/v1/session", "/v1/principals/", "/v1/client-kdf"]
                .iter()
                .any(|r| l.contains(&format!("route=\"{r}")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn several_servers_one_killed(db: Backend) {
    let began = Instant::now();
    let rt = runtime();
    let dir = temp("servers");
    let tdb = VaultDb::new(db, &dir);
    let rk = Rekey::new(&dir, &tdb.url);
    rk.seed(30);
    let vault = rt.block_on(rk.vault());
    let before = rt.block_on(snapshot(&vault));
    // The migration starts with one vault server in the list (preflight's
    // rule); the API servers come after.
    rk.ok(&["start", "--code-word", "Start"]);
    let base = rt.block_on(vault.progress()).unwrap();
    assert!(base.users.remaining > 1, "{base:?}");

    let ports = free_ports(3);
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    // The first takes the host name, the seeded vault server's entry; the
    // others their own.
    let names = [None, Some("servers-test-b"), Some("servers-test-c")];
    let mut servers: Vec<Option<Guard>> = ports
        .iter()
        .zip(names)
        .map(|(p, n)| Some(serve(&rk, *p, n)))
        .collect();

    // Each server registered itself in the vault's server list.
    let listed: Vec<String> = rt
        .block_on(vault.servers())
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for name in [
        rekey_engine::host_name().as_str(),
        "servers-test-b",
        "servers-test-c",
    ] {
        assert!(listed.iter().any(|n| n == name), "{name} not in {listed:?}");
    }

    // A session opened on the first server is taken by the other two.
    let creds = rk.credentials();
    let (name, user) = creds.users.iter().next().unwrap();
    let master =
        rekey_demo::password::master_secret(&user.password, creds.vault, user.id, &creds.kdf)
            .unwrap();
    let authenticator = LoginAuthenticator::derive(&master, creds.vault, user.id).unwrap();
    rt.block_on(async {
        let on_a = HttpClient::new(&urls[0])
            .unwrap()
            .expect_vault(creds.vault)
            .open_session(user.id, &authenticator)
            .await
            .unwrap();
        let token = on_a.session_token().unwrap().to_owned();
        for url in &urls[1..] {
            let other = HttpClient::new(url)
                .unwrap()
                .expect_vault(creds.vault)
                .with_session(&token);
            let package = other.package(user.id).await;
            assert!(
                package.is_ok(),
                "{name}'s session from {} refused by {url}: {package:?}",
                urls[0]
            );
        }
    });

    // What each server answered before the logins (the session check
    // above went to all three).
    let earlier: Vec<u64> = ports.iter().map(|p| client_requests(*p)).collect();

    // Every user logs in, the requests spread over the three servers.
    let mut args = vec!["demo", "login-all", "--credentials", "c.json"];
    for url in &urls {
        args.extend(["--server", url.as_str()]);
    }
    let mut client = Guard(rk.spawn(&args));
    let victim = 1;
    // Kill the second server once some but not all users have migrated.
    let migrated_at_kill = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            panic!("login-all ended ({status:?}) before a user had migrated");
        }
        let p = rt.block_on(vault.progress()).unwrap();
        if p.users.migrated > base.users.migrated {
            break p.users.migrated;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // It was in use: client requests went to it.
    let victim_requests = client_requests(ports[victim]) - earlier[victim];
    assert!(victim_requests > 0, "no client request reached the victim");
    drop(servers[victim].take());
    let after_kill = rt.block_on(vault.progress()).unwrap();
    assert!(
        after_kill.users.remaining > 0,
        "the kill came after every user had migrated: {after_kill:?}"
    );

    let status = client.0.wait().unwrap();
    let stderr = {
        let mut s = String::new();
        if let Some(mut e) = client.0.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    };
    assert!(
        status.success(),
        "login-all with a server killed: {status:?}\n{stderr}"
    );
    // The two left took client requests (not one server doing it all).
    let survivors: Vec<(usize, u64)> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| (i, client_requests(ports[i]) - earlier[i]))
        .collect();
    for (i, n) in &survivors {
        assert!(*n > 0, "server {i} took no client request");
    }
    let end = rt.block_on(vault.progress()).unwrap();
    assert_eq!(
        (end.users.remaining, end.roles.remaining),
        (0, 0),
        "{end:?}"
    );
    drop(servers);

    rk.ok(&["finalize"]);
    rk.ok(&["verify", "--credentials", "c.json"]);
    let report = rt.block_on(check_completed(
        &vault,
        &before,
        &rk.key_dir(),
        &rk.credentials(),
    ));
    assert!(
        report.clean(),
        "{:#?} {:?}",
        report.problems,
        report.missing_certificates
    );
    println!(
        "several servers ({}): 3 servers, server {victim} killed with {} of {} users migrated \
         (the managed ones by the start; {} client requests of login-all had reached it), \
         not restarted; login-all went on through the \
         other two ({} and {} client requests); a session from server 0 taken by servers 1 \
         and 2; finalize and verify passed; {} grants checked: {} lost, {} corrupt, {} \
         duplicated; {} bad principals, {} audit mismatches (every principal in exactly one \
         applied bundle), {} bundles applied; {:.1} s",
        db.name(),
        migrated_at_kill,
        base.users.migrated + base.users.remaining,
        victim_requests,
        survivors[0].1,
        survivors[1].1,
        report.grants_checked,
        report.lost,
        report.corrupt,
        report.duplicated,
        report.bad_principals,
        report.audit_mismatches,
        report.bundles_applied,
        began.elapsed().as_secs_f64()
    );
    rt.block_on(vault.close()).ok();
    drop(tdb);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sqlite_logins_survive_one_of_three_servers_killed() {
    several_servers_one_killed(Backend::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
fn postgres_logins_survive_one_of_three_servers_killed() {
    several_servers_one_killed(Backend::Postgres);
}

#[test]
#[ignore = "needs MariaDB (cargo xtask ci runs it)"]
fn mariadb_logins_survive_one_of_three_servers_killed() {
    several_servers_one_killed(Backend::MySql);
}
