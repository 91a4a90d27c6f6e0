//! JSON mode: a byte-level recogniser of one JSON object (RFC 8259, nesting bounded), so
//! sampling can refuse any token whose bytes would break the document and end it when the
//! object closes.

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl Num {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }

    fn next(self, b: u8) -> Option<Num> {
        let digit = b.is_ascii_digit();
        Some(match (self, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, _) if digit => Num::Int,
            (Num::Int, _) if digit => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::E,
            (Num::Dot | Num::Frac, _) if digit => Num::Frac,
            (Num::E, b'+' | b'-') => Num::ESign,
            (Num::E | Num::ESign | Num::Exp, _) if digit => Num::Exp,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A value is expected; `close` allows `]` (first place of an array).
    Value {
        close: bool,
    },
    /// A key or, when `close`, `}`.
    Key {
        close: bool,
    },
    Colon,
    /// After a value: `,` or the container's close.
    After,
    /// Inside a string; `escape`: 0 none, 1 after `\`, 2..=5 hex digits still due.
    Str {
        key: bool,
        escape: u8,
    },
    Num(Num),
    /// Inside `true`, `false` or `null`: the literal and how many bytes are matched.
    Lit(&'static [u8], u8),
    Done,
}

/// Where a document stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonState {
    /// Open containers: `{` or `[`.
    stack: Vec<u8>,
    mode: Mode,
    /// Nothing but whitespace has come yet: only `{` may start the document.
    started: bool,
}

impl Default for JsonState {
    fn default() -> Self {
        Self {
            stack: Vec::new(),
            mode: Mode::Value { close: false },
            started: false,
        }
    }
}

impl JsonState {
    /// Whether the object has closed.
    pub fn complete(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Feeds `bytes`; false (and the state is then meaningless) when they break the document.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.byte(b))
    }

    /// Whether `bytes` would keep the document valid, leaving the state as it is.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        !bytes.is_empty() && self.clone().feed(bytes)
    }

    fn end_value(&mut self) {
        self.mode = if self.stack.is_empty() {
            Mode::Done
        } else {
            Mode::After
        };
    }

    fn open(&mut self, c: u8) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            return false;
        }
        self.stack.push(c);
        self.mode = if c == b'{' {
            Mode::Key { close: true }
        } else {
            Mode::Value { close: true }
        };
        true
    }

    fn close(&mut self, c: u8) -> bool {
        let want = if c == b'}' { b'{' } else { b'[' };
        if self.stack.pop() != Some(want) {
            return false;
        }
        self.end_value();
        true
    }

    fn byte(&mut self, b: u8) -> bool {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.mode {
            Mode::Value { close } => {
                if ws {
                    return true;
                }
                if !self.started {
                    self.started = true;
                    return b == b'{' && self.open(b);
                }
                match b {
                    b'{' | b'[' => self.open(b),
                    b']' if close => self.close(b),
                    b'"' => {
                        self.mode = Mode::Str {
                            key: false,
                            escape: 0,
                        };
                        true
                    }
                    b'-' => {
                        self.mode = Mode::Num(Num::Minus);
                        true
                    }
                    b'0' => {
                        self.mode = Mode::Num(Num::Zero);
                        true
                    }
                    b'1'..=b'9' => {
                        self.mode = Mode::Num(Num::Int);
                        true
                    }
                    b't' | b'f' | b'n' => {
                        let lit: &'static [u8] = match b {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        self.mode = Mode::Lit(lit, 1);
                        true
                    }
                    _ => false,
                }
            }
            Mode::Key { close } => match b {
                _ if ws => true,
                b'"' => {
                    self.mode = Mode::Str {
                        key: true,
                        escape: 0,
                    };
                    true
                }
                b'}' if close => self.close(b),
                _ => false,
            },
            Mode::Colon => match b {
                _ if ws => true,
                b':' => {
                    self.mode = Mode::Value { close: false };
                    true
                }
                _ => false,
            },
            Mode::After => match (b, self.stack.last()) {
                _ if ws => true,
                (b',', Some(b'{')) => {
                    self.mode = Mode::Key { close: false };
                    true
                }
                (b',', Some(_)) => {
                    self.mode = Mode::Value { close: false };
                    true
                }
                (b'}' | b']', _) => self.close(b),
                _ => false,
            },
            Mode::Str { key, escape } => self.string_byte(b, key, escape),
            Mode::Num(n) => match n.next(b) {
                Some(n) => {
                    self.mode = Mode::Num(n);
                    true
                }
                None if n.complete() => {
                    self.end_value();
                    self.byte(b)
                }
                None => false,
            },
            Mode::Lit(lit, i) => {
                if lit[i as usize] != b {
                    return false;
                }
                if i as usize + 1 == lit.len() {
                    self.end_value();
                } else {
                    self.mode = Mode::Lit(lit, i + 1);
                }
                true
            }
            Mode::Done => ws,
        }
    }

    fn string_byte(&mut self, b: u8, key: bool, escape: u8) -> bool {
        let next = match escape {
            0 => match b {
                b'"' => {
                    if key {
                        self.mode = Mode::Colon;
                    } else {
                        self.end_value();
                    }
                    return true;
                }
                b'\\' => 1,
                0..=0x1f => return false,
                _ => 0,
            },
            1 => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 0,
                b'u' => 5,
                _ => return false,
            },
            _ if b.is_ascii_hexdigit() => {
                if escape == 2 {
                    0
                } else {
                    escape - 1
                }
            }
            _ => return false,
        };
        self.mode = Mode::Str { key, escape: next };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::JsonState;

    fn whole(text: &str) -> bool {
        let mut s = JsonState::default();
        s.feed(text.as_bytes()) && s.complete()
    }

    #[test]
    fn objects_are_recognised() {
        assert!(whole(
            r#"{"a": 1, "b": [true, null, -0.5e+3, "x\"y\u00e9"], "c": {}}"#
        ));
        assert!(whole(" {}\n"));
        assert!(whole(r#"{"a":[[],[{}]]}"#));
    }

    #[test]
    fn broken_documents_are_refused() {
        for bad in [
            "[1]",
            r#"{"a" 1}"#,
            r#"{"a": 01}"#,
            r#"{"a": tru}"#,
            r#"{"a": 1,}"#,
            r#"{"a": "x"]"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"a": 1} x"#,
            r#"{"a": 1."#,
        ] {
            assert!(!whole(bad), "{bad}");
        }
        let mut s = JsonState::default();
        assert!(s.feed(b"{\"a\": 12"));
        assert!(!s.complete());
        assert!(s.accepts(b"3}"));
        assert!(!s.accepts(b"x"));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "{\"a\":".to_string() + &"[".repeat(40);
        assert!(!JsonState::default().feed(deep.as_bytes()));
    }
}
