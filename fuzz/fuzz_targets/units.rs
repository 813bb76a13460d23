//! Duration and size parsing: any string gives Ok or Err.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = shellcage::profile::parse_duration(s);
    let _ = shellcage::profile::parse_size(s);
});
