//! One line on stderr that never panics.
//!
//! `eprintln!` panics when stderr is closed or a broken pipe (EPIPE), which
//! turns the command's exit status into 101 and can skip cleanup. Everything
//! shellcage prints for the user outside tests goes through [`say!`].

use std::io::Write;

/// Write `line` and a newline to stderr, ignoring errors.
pub fn line(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `say!("shellcage: {x}")`: like `eprintln!`, but a closed or broken stderr
/// is not an error.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}
