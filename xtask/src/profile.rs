//! Where a migration's CPU time goes: `perf record` with DWARF call graphs
//! over one `rekey demo login-all`, then every sample is put in the first
//! category one of its stack frames names. Used by `bench-report` when
//! `perf` is installed; the report says so when it is not.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// A category of CPU time and the frame names that mark it, in order:
/// a sample counts for the first category that matches any of its frames.
const CATEGORIES: &[(&str, &[&str])] = &[
    ("legacy RSA unwraps (the floor's own work)", &["unwrap_all"]),
    (
        "RSA signature over each bundle",
        &["RSA_sign", "DigestSign"],
    ),
    (
        "RSA private key parsing",
        &["RSA_parse_private_key", "EVP_parse_private_key"],
    ),
    ("password hashing (Argon2id, one per login)", &["argon2"]),
    (
        "P-256: HPKE sealing, ECDSA, key generation",
        &["p256", "hpke", "ecdsa"],
    ),
    ("SQLite (queries, inserts, commits)", &["sqlite3"]),
    (
        "sqlx / sea-orm (building queries, decoding rows)",
        &["sqlx", "sea_orm", "sea_query"],
    ),
    (
        "other RSA (public-key checks)",
        &[
            "RSA_decrypt",
            "rsa_default_private",
            "RSA_verify",
            "RSA_encrypt",
        ],
    ),
    ("bundle building, other", &["build_inner", "build_bundle"]),
];

/// The last category: everything no frame marked.
const REST: &str = "scheduling, allocation, runtime, other";

/// A profile: samples per category, largest first.
pub(crate) struct Profile {
    pub(crate) samples: usize,
    pub(crate) categories: Vec<(&'static str, usize)>,
    /// The wall time the profiled command reported (`"seconds"` in its
    /// JSON output), if it did.
    pub(crate) wall_seconds: Option<f64>,
}

/// Whether `perf` can record here.
pub(crate) fn available() -> bool {
    Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `program args…` in `dir` under `perf record` (99 samples a second
/// per thread, DWARF stacks) into `data`, then categorises the samples.
pub(crate) fn record(
    program: &Path,
    args: &[&str],
    dir: &Path,
    data: &Path,
) -> Result<Profile, String> {
    let data_arg = data.display().to_string();
    let out = Command::new("perf")
        .args([
            "record",
            "--quiet",
            "-F",
            "99",
            "--call-graph",
            "dwarf,16384",
            "-o",
            &data_arg,
            "--",
        ])
        .arg(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("perf record: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "perf record failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut child = Command::new("perf")
        .args(["script", "-F", "comm,tid,ip,sym", "-i", &data_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf script: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "perf script: no output".to_owned())?;
    let wall_seconds = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()
        .and_then(|v| v.get("seconds").and_then(serde_json::Value::as_f64));
    let profile = categorise(BufReader::new(stdout)).map(|mut p| {
        p.wall_seconds = wall_seconds;
        p
    });
    let status = child.wait().map_err(|e| format!("perf script: {e}"))?;
    // The data file is large and of no use once read.
    let _ = std::fs::remove_file(data);
    if !status.success() {
        return Err(format!("perf script failed: {status}"));
    }
    profile
}

/// Reads `perf script` output: a header line per sample, then one
/// indented `address symbol` line per frame, then a blank line.
fn categorise(input: impl BufRead) -> Result<Profile, String> {
    let mut counts = vec![0usize; CATEGORIES.len() + 1];
    let mut samples = 0usize;
    let mut in_sample = false;
    let mut matched: Option<usize> = None;
    let mut finish = |matched: &mut Option<usize>, samples: &mut usize| {
        counts[matched.take().unwrap_or(CATEGORIES.len())] += 1;
        *samples += 1;
    };
    for line in input.lines() {
        let line = line.map_err(|e| format!("reading perf script output: {e}"))?;
        if line.trim().is_empty() {
            if in_sample {
                finish(&mut matched, &mut samples);
                in_sample = false;
            }
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            if in_sample {
                finish(&mut matched, &mut samples);
            }
            in_sample = true;
            continue;
        }
        let symbol = line.trim().split_once(' ').map_or("", |(_, s)| s);
        let hit = CATEGORIES
            .iter()
            .position(|(_, marks)| marks.iter().any(|m| symbol.contains(m)));
        if let Some(i) = hit {
            matched = Some(matched.map_or(i, |m| m.min(i)));
        }
    }
    if in_sample {
        finish(&mut matched, &mut samples);
    }
    if samples == 0 {
        return Err("perf recorded no samples".to_owned());
    }
    let mut categories: Vec<(&'static str, usize)> = CATEGORIES
        .iter()
        .map(|(name, _)| *name)
        .chain(std::iter::once(REST))
        .zip(counts)
        .collect();
    categories.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(Profile {
        samples,
        categories,
        wall_seconds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_go_to_their_first_matching_category() {
        let text = "\
rekey 1 \n\
\t  10 aws_lc_RSA_decrypt\n\
\t  20 rekey_core::bundle::build::unwrap_all::{{closure}}\n\
\n\
sqlx-sqlite-wor 2 \n\
\t  30 sqlite3VdbeExec\n\
\t  40 sqlx_sqlite::worker\n\
\n\
rekey 1 \n\
\t  50 _int_malloc\n\
\n\
rekey 1 \n\
\t  60 aws_lc_RSA_decrypt\n\
\t  70 rekey_engine::engine::Engine::check\n";
        let p = categorise(text.as_bytes()).unwrap();
        assert_eq!(p.samples, 4);
        let count = |name: &str| {
            p.categories
                .iter()
                .find(|(n, _)| n.starts_with(name))
                .map(|c| c.1)
        };
        assert_eq!(count("legacy RSA unwraps"), Some(1));
        assert_eq!(count("SQLite"), Some(1));
        assert_eq!(count("other RSA"), Some(1));
        assert_eq!(count("scheduling"), Some(1));
        assert_eq!(count("sqlx"), Some(0));
    }

    #[test]
    fn no_samples_is_an_error() {
        assert!(categorise("".as_bytes()).is_err());
    }
}
