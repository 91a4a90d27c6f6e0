//! The pre-tokenizer: splits text (with no special tokens in it) into the pieces that BPE encodes
//! one by one.
//!
//! It reproduces Hugging Face `tokenizers`' `Sequence[Digits(individual_digits=true),
//! ByteLevel(add_prefix_space=false, use_regex=true)]` without a regex engine:
//!
//! 1. every numeric char (`char::is_numeric`, general category N) is a piece of its own, and the
//!    text between two of them is split on its own, so a lookahead never sees past a digit;
//! 2. that text is split with GPT-2's pattern
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
//!
//! `\p{L}` is the general category L (from `unicode-general-category`): `char::is_alphabetic`
//! would be wrong, as it also takes the Other_Alphabetic marks (Devanagari vowel signs...) that
//! Oniguruma's `\p{L}` leaves out. `\s` is `char::is_whitespace` (the White_Space property).
//! Both were checked against HF on every code point.

use unicode_general_category::{get_general_category, GeneralCategory};

/// What the split pattern sees in a char.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

/// The class of each ASCII byte, so that ASCII text never looks a table up.
const ASCII: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Number
        } else if matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ') {
            Class::Space
        } else {
            Class::Other
        };
        b += 1;
    }
    t
};

fn class(c: char) -> Class {
    if c.is_ascii() {
        return ASCII[c as usize];
    }
    use GeneralCategory::*;
    match get_general_category(c) {
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter => {
            Class::Letter
        }
        _ if c.is_numeric() => Class::Number,
        _ if c.is_whitespace() => Class::Space,
        _ => Class::Other,
    }
}

/// The char starting at byte `i` of `s` (which must be a char boundary) and its class.
#[inline]
fn at(s: &str, i: usize) -> Option<(char, Class)> {
    let b = *s.as_bytes().get(i)?;
    if b < 0x80 {
        return Some((b as char, ASCII[b as usize]));
    }
    let c = s[i..].chars().next()?;
    Some((c, class(c)))
}

/// The end of the run of chars of class `k` that starts at `i`.
#[inline]
fn run_end(s: &str, mut i: usize, k: Class) -> usize {
    let bytes = s.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if ASCII[b as usize] != k {
                break;
            }
            i += 1;
        } else {
            let c = s[i..].chars().next().unwrap_or_default();
            if class(c) != k {
                break;
            }
            i += c.len_utf8();
        }
    }
    i
}

/// The length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at the start of
/// `rest` (which starts with an apostrophe), if any.
fn contraction(rest: &[u8]) -> Option<usize> {
    match rest.get(1..3) {
        Some(b"re" | b"ve" | b"ll") => Some(3),
        _ => match rest.get(1) {
            Some(b's' | b't' | b'm' | b'd') => Some(2),
            _ => None,
        },
    }
}

/// The pieces of `text`, in order; they cover it exactly.
pub(crate) fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, pos: 0 }
}

pub(crate) struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.text;
        let start = self.pos;
        let (c, k) = at(s, start)?;
        let end = match k {
            // Digits(individual_digits): each numeric char stands alone.
            Class::Number => start + c.len_utf8(),
            Class::Letter => run_end(s, start + c.len_utf8(), Class::Letter),
            Class::Other => {
                let n = (c == '\'')
                    .then(|| contraction(&s.as_bytes()[start..]))
                    .flatten();
                match n {
                    Some(n) => start + n,
                    None => run_end(s, start + c.len_utf8(), Class::Other),
                }
            }
            Class::Space => {
                let after = start + c.len_utf8();
                match at(s, after) {
                    // ` ?\p{L}+` and ` ?[^\s\p{L}\p{N}]+` (never ` ?\p{N}+`: the digit is split off).
                    Some((_, next @ (Class::Letter | Class::Other))) if c == ' ' => {
                        run_end(s, after, next)
                    }
                    _ => {
                        let end = run_end(s, after, Class::Space);
                        match at(s, end) {
                            // `\s+(?!\S)` backs off one char to leave it for the next word.
                            Some((_, Class::Letter | Class::Other)) if end > after => {
                                end - s[..end].chars().next_back().map_or(0, char::len_utf8)
                            }
                            // At the end of the text or before a digit (the end of a split),
                            // `\s+(?!\S)` takes the whole run; a lone space before a word: `\s+`.
                            _ => end,
                        }
                    }
                }
            }
        };
        self.pos = end;
        Some(&s[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    fn split(s: &str) -> Vec<&str> {
        pieces(s).collect()
    }

    #[test]
    fn follows_the_gpt2_pattern_with_isolated_digits() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(split("don't I'll"), ["don", "'t", " I", "'ll"]);
        assert_eq!(split("a 1"), ["a", " ", "1"]);
        assert_eq!(split("x  12 "), ["x", "  ", "1", "2", " "]);
        assert_eq!(split("3.14"), ["3", ".", "1", "4"]);
        assert_eq!(split("a   b"), ["a", "  ", " b"]);
        assert_eq!(split("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(split("a \n b"), ["a", " \n", " b"]);
        assert_eq!(split("  (x)!! "), [" ", " (", "x", ")!!", " "]);
        assert_eq!(split("?'s 's"), ["?'", "s", " '", "s"]);
        assert_eq!(split(""), Vec::<&str>::new());
    }

    #[test]
    fn letters_are_the_general_category_not_alphabetic() {
        // DEVANAGARI VOWEL SIGN I is alphabetic but a mark (Mc): it is not part of the word.
        assert_eq!(split("कि"), ["क", "ि"]);
        assert_eq!(split("e\u{301}t"), ["e", "\u{301}", "t"]);
        // U+3000 is whitespace, U+200B (ZWSP) is not.
        assert_eq!(
            split("a\u{3000}b\u{200b}c"),
            ["a", "\u{3000}", "b", "\u{200b}", "c"]
        );
    }
}
