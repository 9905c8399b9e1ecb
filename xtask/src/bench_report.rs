//! Placeholder being written this session (owner will replace it).

pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    Err("this xtask command is not written yet".into())
}
