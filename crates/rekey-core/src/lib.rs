//! rekey-core: the pure heart of rekey. Crypto schemes and typed keys,
//! the wrapped-key envelope, the migration lifecycle, bundles (building,
//! checking, their byte codec) and the migration package document, and the
//! reports the engine's operations answer. No I/O, no async runtime, no
//! database.
//!
//! The byte layouts are specified in `docs/FORMAT.md`.

pub mod auth;
pub mod bundle;
pub mod confirm;
pub mod crypto;
pub mod envelope;
pub mod error;
pub mod grant;
pub mod ids;
pub mod kek;
pub mod labels;
pub mod lifecycle;
pub mod model;
pub mod record;
pub mod report;
pub mod secret;
#[doc(hidden)]
pub mod worked_examples;

pub use crypto::ec::{Curve, EcPrivateKey, EcPublicKey};
pub use crypto::hybrid::{HybridPrivateKey, HybridPublicKey};
pub use crypto::pq::{XWingPrivateKey, XWingPublicKey};
pub use crypto::rsa::{LegacyRsaPrivateKey, LegacyRsaPublicKey};
pub use crypto::target::{NewPrivateKey, NewPublicKey, Target};
pub use crypto::{PrivateKey, PublicKey};
pub use envelope::{Envelope, Scheme};
pub use error::{CryptoError, EnvelopeError};
pub use grant::{
    BatchSealer, GrantOpener, open_grant, seal_grant, seal_hybrid_grant, wrap_legacy_grant,
    wrap_to_pending_holder,
};
pub use ids::{
    GrantBinding, GrantId, KeyBinding, KeyPairId, PrincipalId, RecordId, RunId, Subject, VaultId,
};
pub use secret::{Kek, MasterSecret, RecordKey, SecretBytes};
