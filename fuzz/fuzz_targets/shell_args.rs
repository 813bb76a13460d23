//! `shellcage sh` argument parsing: any argument vector gives Ok or Err.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|args: Vec<String>| {
    let _ = shellcage::cli::parse_shell_args(&args);
});
