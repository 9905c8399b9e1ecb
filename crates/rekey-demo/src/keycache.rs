//! Where the demo's RSA keys come from: a reusable cache file first, then
//! fresh keys generated on every core. Generating an RSA-2048 key costs
//! about 90 ms here, so repeated seeds (tests, benches) keep a cache.
//!
//! Cache format: `"rekey-key-cache\n"` then, per key, `u16 bits ‖ u32 len ‖
//! PKCS#8 DER`. It holds private keys: demo only, written with mode 0600.

use crate::error::DemoError;
use rayon::prelude::*;
use rekey_core::LegacyRsaPrivateKey;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

const MAGIC: &[u8] = b"rekey-key-cache\n";

/// A source of RSA keys for the demo.
#[derive(Debug, Default)]
pub struct KeySource {
    cache: Option<PathBuf>,
    preset: Vec<LegacyRsaPrivateKey>,
    /// Keys generated in this run (not from the cache).
    pub generated: usize,
    /// Keys taken from the cache.
    pub reused: usize,
    /// At most this many distinct keys; the rest repeat them.
    distinct_limit: Option<usize>,
}

impl KeySource {
    /// No cache: every key is fresh.
    #[must_use]
    pub fn fresh() -> Self {
        Self::default()
    }

    /// Keys from `path` first; new keys are appended to it.
    #[must_use]
    pub fn with_cache(path: impl Into<PathBuf>) -> Self {
        Self {
            cache: Some(path.into()),
            ..Self::default()
        }
    }

    /// Exactly these keys, in order (tests use the fixture keys).
    #[must_use]
    pub fn preset(keys: Vec<LegacyRsaPrivateKey>) -> Self {
        Self {
            preset: keys,
            ..Self::default()
        }
    }

    /// Makes at most `limit` distinct keys and repeats them for the rest:
    /// lets a benchmark seed a vault of tens of thousands of users without
    /// generating as many RSA keys. The crypto work per grant is the same;
    /// a real vault never shares keys between principals.
    #[must_use]
    pub fn with_distinct_limit(mut self, limit: usize) -> Self {
        self.distinct_limit = Some(limit.max(1));
        self
    }

    fn load(&self, bits: usize) -> Result<Vec<LegacyRsaPrivateKey>, DemoError> {
        let Some(path) = &self.cache else {
            return Ok(Vec::new());
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(DemoError::file(path, e));
            }
        };
        let bad = |why: &str| DemoError::file(path, format!("key cache: {why}"));
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a rekey key cache"))?;
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < rest.len() {
            let header = rest
                .get(pos..pos + 6)
                .ok_or_else(|| bad("truncated entry"))?;
            let entry_bits = usize::from(u16::from_be_bytes([header[0], header[1]]));
            let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
            let der = rest
                .get(pos + 6..pos + 6 + len)
                .ok_or_else(|| bad("truncated key"))?;
            pos += 6 + len;
            if entry_bits == bits {
                out.push(
                    LegacyRsaPrivateKey::from_pkcs8_der(der)
                        .map_err(|_| bad("a key does not parse"))?,
                );
            }
        }
        Ok(out)
    }

    fn append(&self, keys: &[LegacyRsaPrivateKey]) -> Result<(), DemoError> {
        let Some(path) = &self.cache else {
            return Ok(());
        };
        use std::io::Write;
        let fail = |e: std::io::Error| DemoError::file(path, e);
        let exists = path.exists();
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(fail)?;
            }
        }
        let mut f = opts.open(path).map_err(fail)?;
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        if !exists {
            buf.extend_from_slice(MAGIC);
        }
        for k in keys {
            let der = k.dangerous_pkcs8_der();
            buf.extend_from_slice(&u16::try_from(k.bits()).unwrap_or(0).to_be_bytes());
            buf.extend_from_slice(&u32::try_from(der.len()).unwrap_or(0).to_be_bytes());
            buf.extend_from_slice(der);
        }
        f.write_all(&buf).map_err(fail)?;
        f.sync_all().map_err(fail)
    }

    /// `n` distinct keys of `bits`: cached ones first, the rest generated
    /// in parallel (and added to the cache). `progress(done, total)`.
    pub fn take(
        &mut self,
        n: usize,
        bits: usize,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<LegacyRsaPrivateKey>, DemoError> {
        let mut keys = std::mem::take(&mut self.preset);
        keys.retain(|k| k.bits() == bits);
        keys.extend(self.load(bits)?);
        let distinct = self.distinct_limit.map_or(n, |l| l.min(n));
        keys.truncate(distinct);
        self.reused = keys.len();
        let missing = distinct - keys.len();
        let done = AtomicUsize::new(0);
        let fresh: Vec<LegacyRsaPrivateKey> = (0..missing)
            .into_par_iter()
            .map(|_| {
                let key = LegacyRsaPrivateKey::generate(bits);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(d, missing);
                key
            })
            .collect::<Result<_, _>>()?;
        self.generated = fresh.len();
        self.append(&fresh)?;
        keys.extend(fresh);
        let mut i = 0;
        while keys.len() < n {
            let again = LegacyRsaPrivateKey::from_pkcs8_der(keys[i].dangerous_pkcs8_der())?;
            keys.push(again);
            i += 1;
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distinct_limit_repeats_the_keys_it_has() {
        let fixture = |der: &[u8]| LegacyRsaPrivateKey::from_pkcs8_der(der).expect("fixture");
        let a = fixture(include_bytes!(
            "../../rekey-core/tests/fixtures/rsa-2048-a.pk8"
        ));
        let b = fixture(include_bytes!(
            "../../rekey-core/tests/fixtures/rsa-2048-b.pk8"
        ));
        let mut source = KeySource::preset(vec![a, b]).with_distinct_limit(2);
        let keys = source.take(5, 2048, &|_, _| {}).expect("keys");
        let fps: Vec<String> = keys.iter().map(|k| k.public_key().fingerprint()).collect();
        assert_eq!(fps.len(), 5);
        assert_ne!(fps[0], fps[1]);
        assert_eq!(fps[2], fps[0]);
        assert_eq!(fps[3], fps[1]);
        assert_eq!(fps[4], fps[0]);
        assert_eq!((source.generated, source.reused), (0, 2));
    }
}
