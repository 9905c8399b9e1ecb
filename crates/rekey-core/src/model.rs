//! The vault's domain model: plain data shared by storage, the engine and
//! the frontends. No behaviour that needs I/O.
