//! TEMPORARY STUB until the landlock work item lands (same API).
use std::path::PathBuf;
#[derive(Debug, thiserror::Error)]
#[error("landlock stub")]
pub struct LandlockError;
pub struct LandlockSpec {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub dev_rw: Vec<PathBuf>,
    pub proc_path: Option<PathBuf>,
    pub deny_tcp: bool,
    pub scopes: bool,
    pub required: bool,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct LandlockStatus {
    pub abi: u32,
}
pub fn abi() -> u32 {
    crate::sys::landlock_abi_version()
}
pub fn apply(_spec: &LandlockSpec) -> Result<LandlockStatus, LandlockError> {
    Ok(LandlockStatus { abi: 0 })
}
