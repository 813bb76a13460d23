//! Durations (`"1h30m"`) and sizes (`"512M"`) as written in profiles.
//!
//! Both parsers are strict: no signs, no fractions, no spaces, no repeated or
//! out-of-order units, and overflow is an error rather than a wrap or a clamp.

use std::time::Duration;

/// Duration units, largest first, with their length in milliseconds.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `"90s"`, `"10m"`, `"1h30m"`, `"500ms"`, `"2d"`, or a plain number of
/// seconds (`"30"`). Units may be combined, largest first, each at most once.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s
            .parse()
            .map_err(|_| format!("duration {s:?} is too large"))?;
        return Ok(Duration::from_secs(secs));
    }
    let bytes = s.as_bytes();
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the previous unit; the next must be smaller.
    let mut previous: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(format!(
                "invalid duration {s:?}: expected a number at byte {start} (units: ms s m h d, e.g. \"1h30m\")"
            ));
        }
        let number: u64 = s[start..i]
            .parse()
            .map_err(|_| format!("duration {s:?} is too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!(
                    "invalid duration {s:?}: {} has no unit (units: ms s m h d)",
                    &s[start..i]
                )
            } else {
                format!("invalid duration {s:?}: unknown unit {unit:?} (units: ms s m h d)")
            });
        };
        if previous.is_some_and(|p| p >= index) {
            return Err(format!(
                "invalid duration {s:?}: units must appear once each, largest first"
            ));
        }
        previous = Some(index);
        total_ms = number
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| ms.checked_add(total_ms))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte count: `"1024"`, or an integer with a binary suffix
/// `K` (2^10), `M` (2^20), `G` (2^30) or `T` (2^40), upper or lower case.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        None => return Err("empty size".to_owned()),
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 40),
        Some(_) => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid size {s:?}: expected an integer with an optional K, M, G or T suffix (e.g. \"512M\")"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("size {s:?} is too large"))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The smallest CPU limit (thousandths of a core): the kernel refuses CFS
/// quotas under 1 ms per 100 ms period.
pub const CPU_MIN_MILLIS: u32 = 10;

/// The largest CPU limit accepted (cores), far above any real machine.
pub const CPU_MAX_CORES: u32 = 4096;

/// `"2"`, `"0.5"`, `"1.25"` cores → thousandths of a core. At most three
/// decimals, at least 0.01 cores.
pub fn parse_cpu(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid cpu limit {s:?}: expected cores such as \"2\" or \"0.5\"");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    if frac.len() > 3 {
        return Err(format!("invalid cpu limit {s:?}: at most three decimals"));
    }
    let int: u32 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    if int > CPU_MAX_CORES {
        return Err(format!(
            "invalid cpu limit {s:?}: more than {CPU_MAX_CORES} cores"
        ));
    }
    let frac: u32 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let millis = int * 1000 + frac;
    if millis < CPU_MIN_MILLIS {
        return Err(format!(
            "invalid cpu limit {s:?}: the smallest is 0.01 cores"
        ));
    }
    Ok(millis)
}
