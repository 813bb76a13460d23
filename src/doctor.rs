//! `shellcage doctor` (placeholder until the probe work lands).
pub fn run(_json: bool, _profile: &str) -> anyhow::Result<i32> {
    Ok(0)
}
