//! TEMPORARY STUB until the seccomp work item lands (same API).
#[derive(Debug, thiserror::Error)]
#[error("seccomp stub")]
pub struct SeccompError;
pub struct SeccompSpec {
    pub allow_inet: bool,
}
pub fn build(_spec: &SeccompSpec) -> Result<seccompiler::BpfProgram, SeccompError> {
    Ok(vec![])
}
pub fn install(_prog: &seccompiler::BpfProgram) -> Result<(), SeccompError> {
    Ok(())
}
pub fn denied_syscalls() -> Vec<&'static str> {
    vec![]
}
