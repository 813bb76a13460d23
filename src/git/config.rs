//! Reading and writing git's configuration syntax.
//!
//! The reader mirrors git's own parser state machine in `config.c`
//! (`get_next_char`, `parse_value`, `get_value`, `get_base_var`,
//! `get_extended_base_var`, `git_parse_source`; unchanged from v2.39 to the
//! 2026 master), function by function, so a reviewer can hold the two side by
//! side. `tests/gitconfig_git.rs` checks it against `git config --list -z
//! --no-includes` on random inputs.
//!
//! Where git's meaning of a file would hinge on C-string truncation (a NUL
//! byte) or on its size limit, this reader refuses the file instead: every
//! caller treats a file it cannot read as one it must not trust.
//!
//! Keys are the flat strings git compares against (`remote.origin.url`):
//! section and variable name lower-cased, subsection kept byte for byte.
//! Values are bytes; `None` is a key without `=` (boolean true).

use std::collections::BTreeMap;
use std::ops::Range;

/// Configuration files larger than this are refused (git's own limit is
/// INT_MAX; ours only bounds the work and memory of the supervisor).
pub const MAX_CONFIG_SIZE: usize = 1 << 20;

/// One value of a key: `None` is a key written without `=`.
pub type Value = Option<Vec<u8>>;

/// Every key of a file with its values in file order.
pub type ValueMap = BTreeMap<Vec<u8>, Vec<Value>>;

/// A parsed configuration file with the byte ranges of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub entries: Vec<Entry>,
    pub headers: Vec<Header>,
}

/// `key = value`: `span` runs from the first byte of the key to just after the
/// newline that ends the value (continuation lines included), or to the end of
/// the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Value,
    pub span: Range<usize>,
    /// Index into [`Config::headers`] of the section it belongs to.
    pub header: Option<usize>,
}

/// `[section "subsection"]`: `prefix` is the flat key prefix it opens
/// (`remote.origin`), `span` runs from `[` to just after `]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub prefix: Vec<u8>,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("bad config line {line}")]
    Syntax { line: usize },
    #[error("config has a NUL byte on line {line}")]
    Nul { line: usize },
    #[error("config is larger than {MAX_CONFIG_SIZE} bytes")]
    TooLarge,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("section name {0:?} is not [a-z0-9-]+")]
    Section(String),
    #[error("variable name {0:?} is not [a-z][a-z0-9-]*")]
    Name(String),
    #[error("subsection {0:?} has a newline or a NUL byte")]
    Subsection(String),
    #[error("value has a NUL byte")]
    Value,
}

/// git's `sane_ctype` isspace: only these four.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// git's `iskeychar`.
fn is_keychar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

const UTF8_BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// git's `struct config_source` over a byte slice.
struct Source<'a> {
    buf: &'a [u8],
    pos: usize,
    eof: bool,
}

impl Source<'_> {
    fn fgetc(&mut self) -> Option<u8> {
        let c = self.buf.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// `get_next_char`: CRLF reads as LF; at the end of input it returns
    /// `\n` (again and again) with `eof` set.
    fn next(&mut self) -> u8 {
        let mut c = self.fgetc();
        if c == Some(b'\r') {
            c = self.fgetc();
            if c != Some(b'\n') {
                if c.is_some() {
                    self.pos -= 1;
                }
                c = Some(b'\r');
            }
        }
        match c {
            Some(c) => c,
            None => {
                self.eof = true;
                b'\n'
            }
        }
    }

    fn line(&self) -> usize {
        1 + self.buf[..self.pos.min(self.buf.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn syntax(&self) -> ParseError {
        ParseError::Syntax { line: self.line() }
    }

    /// `parse_value`: `None` where git returns NULL (unclosed quote, unknown
    /// escape).
    fn parse_value(&mut self) -> Option<Vec<u8>> {
        let (mut quote, mut comment) = (false, false);
        let mut trim_len = 0;
        let mut value = Vec::new();
        loop {
            let mut c = self.next();
            if c == b'\n' {
                if quote {
                    return None;
                }
                if trim_len != 0 {
                    value.truncate(trim_len);
                }
                return Some(value);
            }
            if comment {
                continue;
            }
            if is_space(c) && !quote {
                if trim_len == 0 {
                    trim_len = value.len();
                }
                if !value.is_empty() {
                    value.push(c);
                }
                continue;
            }
            if !quote && (c == b';' || c == b'#') {
                comment = true;
                continue;
            }
            trim_len = 0;
            if c == b'\\' {
                c = match self.next() {
                    b'\n' => continue,
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'n' => b'\n',
                    c @ (b'\\' | b'"') => c,
                    _ => return None,
                };
                value.push(c);
                continue;
            }
            if c == b'"' {
                quote = !quote;
                continue;
            }
            value.push(c);
        }
    }

    /// `get_value`: the rest of the key name (lower-cased into `name`), then
    /// `=` and a value, or the end of the line (no value).
    fn get_value(&mut self, name: &mut Vec<u8>) -> Result<Value, ParseError> {
        let mut c;
        loop {
            c = self.next();
            if self.eof || !is_keychar(c) {
                break;
            }
            name.push(c.to_ascii_lowercase());
        }
        while c == b' ' || c == b'\t' {
            c = self.next();
        }
        if c == b'\n' {
            return Ok(None);
        }
        if c != b'=' {
            return Err(self.syntax());
        }
        self.parse_value().map(Some).ok_or_else(|| self.syntax())
    }

    /// `get_extended_base_var`: `[section "subsection"]` after the space.
    fn get_extended_base_var(&mut self, name: &mut Vec<u8>, mut c: u8) -> Result<(), ParseError> {
        loop {
            if c == b'\n' {
                return Err(self.syntax());
            }
            c = self.next();
            if !is_space(c) {
                break;
            }
        }
        if c != b'"' {
            return Err(self.syntax());
        }
        name.push(b'.');
        loop {
            let mut c = self.next();
            if c == b'\n' {
                return Err(self.syntax());
            }
            if c == b'"' {
                break;
            }
            if c == b'\\' {
                c = self.next();
                if c == b'\n' {
                    return Err(self.syntax());
                }
            }
            name.push(c);
        }
        if self.next() != b']' {
            return Err(self.syntax());
        }
        Ok(())
    }

    /// `get_base_var`: a section header after `[`, lower-cased (the
    /// deprecated `[section.subsection]` form included).
    fn get_base_var(&mut self, name: &mut Vec<u8>) -> Result<(), ParseError> {
        loop {
            let c = self.next();
            if self.eof {
                return Err(self.syntax());
            }
            if c == b']' {
                return Ok(());
            }
            if is_space(c) {
                return self.get_extended_base_var(name, c);
            }
            if !is_keychar(c) && c != b'.' {
                return Err(self.syntax());
            }
            name.push(c.to_ascii_lowercase());
        }
    }
}

impl Config {
    /// Parse a configuration file exactly as git would (`git_parse_source`),
    /// keeping the byte range of every header and entry.
    pub fn parse(text: &[u8]) -> Result<Config, ParseError> {
        if text.len() > MAX_CONFIG_SIZE {
            return Err(ParseError::TooLarge);
        }
        if let Some(at) = text.iter().position(|&b| b == 0) {
            let line = 1 + text[..at].iter().filter(|&&b| b == b'\n').count();
            return Err(ParseError::Nul { line });
        }
        let mut src = Source {
            buf: text,
            pos: 0,
            eof: false,
        };
        let mut cfg = Config {
            entries: Vec::new(),
            headers: Vec::new(),
        };
        let mut comment = false;
        let mut var: Vec<u8> = Vec::new();
        let mut baselen = 0;
        let mut bom = Some(0usize);
        loop {
            let start = src.pos;
            let c = src.next();
            if let Some(i) = bom.filter(|&i| i < UTF8_BOM.len()) {
                if c == UTF8_BOM[i] && !src.eof {
                    bom = Some(i + 1);
                    continue;
                }
                if i != 0 {
                    return Err(src.syntax());
                }
                bom = None;
            }
            if c == b'\n' {
                if src.eof {
                    return Ok(cfg);
                }
                comment = false;
                continue;
            }
            if comment || is_space(c) {
                continue;
            }
            if c == b'#' || c == b';' {
                comment = true;
                continue;
            }
            if c == b'[' {
                var.clear();
                src.get_base_var(&mut var)?;
                if var.is_empty() {
                    return Err(src.syntax());
                }
                cfg.headers.push(Header {
                    prefix: var.clone(),
                    span: start..src.pos,
                });
                var.push(b'.');
                baselen = var.len();
                continue;
            }
            if !c.is_ascii_alphabetic() {
                return Err(src.syntax());
            }
            var.truncate(baselen);
            var.push(c.to_ascii_lowercase());
            let value = src.get_value(&mut var)?;
            cfg.entries.push(Entry {
                key: var.clone(),
                value,
                span: start..src.pos,
                header: cfg.headers.len().checked_sub(1),
            });
        }
    }

    /// Every key with its values, in file order per key.
    pub fn values(&self) -> ValueMap {
        let mut map = ValueMap::new();
        for e in &self.entries {
            map.entry(e.key.clone()).or_default().push(e.value.clone());
        }
        map
    }
}

/// A flat key split the way git's `parse_config_key` does: the section ends
/// at the first dot, the variable name starts after the last one, and what is
/// between (dots included) is the subsection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub section: &'a [u8],
    pub subsection: Option<&'a [u8]>,
    pub name: &'a [u8],
}

/// `None` for a key without a dot (an entry before any section header),
/// which git never matches against a configuration variable.
pub fn split_key(key: &[u8]) -> Option<KeyParts<'_>> {
    let first = key.iter().position(|&b| b == b'.')?;
    let last = key.iter().rposition(|&b| b == b'.')?;
    Some(KeyParts {
        section: &key[..first],
        subsection: (first != last).then(|| &key[first + 1..last]),
        name: &key[last + 1..],
    })
}

/// A key for messages: printable ASCII as is, everything else escaped.
pub fn display_key(key: &[u8]) -> String {
    let mut s = String::new();
    for &b in key {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// `[section]` or `[section "subsection"]` with `"` and `\` escaped.
pub fn format_header(section: &[u8], subsection: Option<&[u8]>) -> Result<Vec<u8>, WriteError> {
    if section.is_empty()
        || !section
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(WriteError::Section(display_key(section)));
    }
    let mut out = vec![b'['];
    out.extend_from_slice(section);
    if let Some(sub) = subsection {
        if sub.iter().any(|&b| b == b'\n' || b == 0) {
            return Err(WriteError::Subsection(display_key(sub)));
        }
        out.extend_from_slice(b" \"");
        for &b in sub {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"]\n");
    Ok(out)
}

/// `\tname = value\n`, quoted and escaped where git's reader needs it;
/// `\tname\n` for a value-less key.
pub fn format_entry(name: &[u8], value: Option<&[u8]>) -> Result<Vec<u8>, WriteError> {
    let valid = name.first().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(WriteError::Name(display_key(name)));
    }
    let mut out = vec![b'\t'];
    out.extend_from_slice(name);
    let Some(value) = value else {
        out.push(b'\n');
        return Ok(out);
    };
    if value.contains(&0) {
        return Err(WriteError::Value);
    }
    out.extend_from_slice(b" = ");
    let edge_space = |b: Option<&u8>| b.is_some_and(|&b| b == b' ' || b == b'\t');
    let quote = value.is_empty()
        || edge_space(value.first())
        || edge_space(value.last())
        || value
            .iter()
            .any(|&b| b < 0x20 || b == 0x7f || matches!(b, b'"' | b'\\' | b'#' | b';'));
    if quote {
        out.push(b'"');
    }
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            _ => out.push(b),
        }
    }
    if quote {
        out.push(b'"');
    }
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, Option<String>)> {
        Config::parse(text.as_bytes())
            .unwrap()
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.key).into_owned(),
                    e.value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect()
    }

    fn one(text: &str) -> (String, Option<String>) {
        let all = kv(text);
        assert_eq!(all.len(), 1, "{text:?} => {all:?}");
        all.into_iter().next().unwrap()
    }

    fn s(k: &str, v: &str) -> (String, Option<String>) {
        (k.into(), Some(v.into()))
    }

    #[test]
    fn sections_and_case() {
        assert_eq!(one("[Core]\n\tFSMonitor = x\n"), s("core.fsmonitor", "x"));
        assert_eq!(
            one("[Remote \"Origin\"]\nURL=u"),
            s("remote.Origin.url", "u")
        );
        // Deprecated form: the whole header is lower-cased.
        assert_eq!(one("[Remote.Origin]url=u"), s("remote.origin.url", "u"));
        assert_eq!(one("[a.b \"c\"]d=1"), s("a.b.c.d", "1"));
        assert_eq!(one("[ \"x\"]a=1"), s(".x.a", "1"));
        assert_eq!(one("[a.]b=1"), s("a..b", "1"));
        assert_eq!(one("foo=1"), s("foo", "1"));
        assert_eq!(one("[a \"q\\\"\\\\\\x\"]c=1"), s("a.q\"\\x.c", "1"));
    }

    #[test]
    fn values_quotes_escapes_comments() {
        assert_eq!(one("[a]b"), ("a.b".into(), None));
        assert_eq!(one("[a]b="), s("a.b", ""));
        assert_eq!(one("[a] b = x  # y\n"), s("a.b", "x"));
        assert_eq!(one("[a]b = \" x \" ; c"), s("a.b", " x "));
        assert_eq!(one("[a]b = x\\\n y"), s("a.b", "x y"));
        assert_eq!(one("[a]b = \"x\\ty\\n\\b\""), s("a.b", "x\ty\n\x08"));
        assert_eq!(one("[a]b=x\\"), s("a.b", "x"));
        assert_eq!(one("[a]b=1\r\n"), s("a.b", "1"));
        assert_eq!(one("[a]b=1\rc\n"), s("a.b", "1\rc"));
        assert_eq!(one("# c \\\n[a]b=1"), s("a.b", "1"));
        assert_eq!(one("\u{feff}[a]b=1"), s("a.b", "1"));
        assert_eq!(one("[a]b = a \"b\" c"), s("a.b", "a b c"));
    }

    #[test]
    fn syntax_errors_where_git_has_them() {
        for bad in [
            "[a]b # c\n",
            "[a \"b\" ]x=1",
            "[a]b=\"x",
            "\u{ef}\u{bb}[a]b=1",
            "[a]1b=1",
            "[a]b_c=1",
            "[]a=1",
            "[a\n]b=1",
            "[a \"b\nc\"]d=1",
            "[a]b=\\q",
            "[a",
            "[a]b c=1",
        ] {
            assert!(Config::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            Config::parse(b"[a]b=x\0y"),
            Err(ParseError::Nul { line: 1 })
        );
    }

    #[test]
    fn spans_cover_entries_and_headers() {
        let text = b"[core]\n\tbare = false\n[remote \"o\"] url = a\\\n b\n";
        let cfg = Config::parse(text).unwrap();
        assert_eq!(&text[cfg.headers[0].span.clone()], b"[core]");
        assert_eq!(&text[cfg.entries[0].span.clone()], b"bare = false\n");
        assert_eq!(&text[cfg.entries[1].span.clone()], b"url = a\\\n b\n");
        assert_eq!(cfg.entries[1].header, Some(1));
        assert_eq!(cfg.headers[1].prefix, b"remote.o");
    }

    #[test]
    fn split_key_like_parse_config_key() {
        let p = split_key(b"url.https://example.com/.insteadof").unwrap();
        assert_eq!(p.section, b"url");
        assert_eq!(p.subsection, Some(&b"https://example.com/"[..]));
        assert_eq!(p.name, b"insteadof");
        assert_eq!(split_key(b"core.bare").unwrap().subsection, None);
        assert!(split_key(b"foo").is_none());
    }

    #[test]
    fn writer_round_trips() {
        for v in [
            "",
            " x",
            "x ",
            "a#b",
            "a;b",
            "q\"q",
            "b\\s",
            "t\tn\nb\x08",
            "x\ry",
            "plain",
            "ünï",
        ] {
            let mut text = format_header(b"sec", Some(b"s \"u\\b\"")).unwrap();
            text.extend(format_entry(b"name", Some(v.as_bytes())).unwrap());
            text.extend(format_entry(b"flag", None).unwrap());
            let cfg = Config::parse(&text).unwrap();
            assert_eq!(cfg.entries[0].key, b"sec.s \"u\\b\".name");
            assert_eq!(cfg.entries[0].value.as_deref(), Some(v.as_bytes()), "{v:?}");
            assert_eq!(cfg.entries[1].value, None);
        }
        assert!(format_header(b"Core", None).is_err());
        assert!(format_entry(b"1x", None).is_err());
        assert!(format_header(b"a", Some(b"x\ny")).is_err());
    }
}
