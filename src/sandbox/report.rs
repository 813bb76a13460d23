//! The report pipe: typed messages from the sandbox to the supervisor.
//!
//! The supervisor creates the pipe (close-on-exec) before the clone; the init
//! and the command process write to it until the command's `execve` closes the
//! command's copy, and the init's copy closes when it exits. So everything on
//! the pipe comes from shellcage's own code, never from the sandboxed command.
//!
//! One message per line, each a JSON value of [`Message`]; [`Message::encode`]
//! and [`Decoder`] are the only writer and reader of that format.

use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

use super::landlock::LandlockStatus;
use super::lookups::LookupRecord;
use crate::sys;

/// What the sandbox tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// A setup step failed (nothing ran), or `execve` did: one line for the user.
    Error(String),
    /// `-v` timing: a phase reached, in microseconds since the supervisor's start.
    Phase { name: String, micros: u64 },
    /// What Landlock enforced, as `landlock_restrict_self` answered it.
    Landlock(LandlockStatus),
    /// Network mode `none`: the name lookups the init answered (sent once, by the init,
    /// just before the final status; absent when there were none).
    Lookups(LookupRecord),
    /// The command exited with this code (sent once everything else in the
    /// sandbox has been killed and reaped).
    Exited(i32),
    /// The command was killed by this signal (idem).
    Signaled(i32),
}

impl Message {
    /// One line: JSON and a newline. An error's text is kept on one line.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = match self {
            Message::Error(text) if text.contains('\n') => {
                serde_json::to_vec(&Message::Error(text.replace('\n', " ")))
            }
            other => serde_json::to_vec(other),
        }
        .unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Parse one line (without its newline). A line that is not a message is
    /// `None`: the reader skips it.
    pub fn decode(line: &[u8]) -> Option<Message> {
        serde_json::from_slice(line).ok()
    }

    /// The command's final status, once the sandbox is over.
    pub fn is_final(&self) -> bool {
        matches!(self, Message::Exited(_) | Message::Signaled(_))
    }
}

/// Write `message` to the report pipe's write end `fd`, ignoring errors (the
/// writers are about to exit or exec; a supervisor that is gone cannot read).
pub fn send(fd: RawFd, message: &Message) {
    sys::write_all_raw(fd, &message.encode());
}

/// Reassembles messages from the bytes read off the pipe, in any chunks.
#[derive(Debug, Default)]
pub struct Decoder {
    partial: Vec<u8>,
    messages: Vec<Message>,
}

impl Decoder {
    /// Add bytes read from the pipe.
    pub fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            if let Some(message) = Message::decode(&line[..end]) {
                self.messages.push(message);
            }
        }
    }

    /// Has the command's final status arrived?
    pub fn final_seen(&self) -> bool {
        self.messages.iter().any(Message::is_final)
    }

    /// Every complete message, in order. A last line without its newline (the
    /// writer died in the middle of it) is still decoded if it is whole.
    pub fn finish(mut self) -> Vec<Message> {
        if let Some(message) = Message::decode(&self.partial) {
            self.messages.push(message);
        }
        self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::landlock::Enforced;

    fn all() -> Vec<Message> {
        vec![
            Message::Error("cannot execute /x: permission denied".into()),
            Message::Phase {
                name: "root built".into(),
                micros: 1234,
            },
            Message::Landlock(LandlockStatus {
                abi: 7,
                ruleset: Some(Enforced::Full),
                filesystem: Enforced::Full,
                tcp: Enforced::Partial,
                scopes: Enforced::Full,
            }),
            Message::Lookups(LookupRecord {
                total: 3,
                names: vec![crate::sandbox::lookups::NameCount {
                    name: "a.example".into(),
                    count: 3,
                }],
            }),
            Message::Exited(3),
            Message::Signaled(9),
        ]
    }

    #[test]
    fn every_message_round_trips_in_any_chunking() {
        let bytes: Vec<u8> = all().iter().flat_map(Message::encode).collect();
        for chunk in [1, 2, 7, 64, bytes.len()] {
            let mut d = Decoder::default();
            for piece in bytes.chunks(chunk) {
                d.push(piece);
            }
            assert!(d.final_seen());
            assert_eq!(d.finish(), all(), "chunks of {chunk}");
        }
    }

    #[test]
    fn one_message_per_line_and_garbage_is_skipped() {
        let e = Message::Error("two\nlines".into()).encode();
        assert_eq!(e.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut d = Decoder::default();
        d.push(b"X 0\nnot json\n");
        d.push(&e);
        assert!(!d.final_seen());
        d.push(br#"{"exited":0}"#); // no newline: the writer died there
        assert_eq!(
            d.finish(),
            vec![Message::Error("two lines".into()), Message::Exited(0)]
        );
    }
}
