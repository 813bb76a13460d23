//! Kernel feature probing (owned by the probe work item).
