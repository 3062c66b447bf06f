//! The fast reader of a JSON record on a schema's paths: one pass over the bytes, keys matched
//! in the path tree where they stand, values on a path handed over as slices of the record
//! ([`Leaves`]: converted straight into the event, or kept in raw slots), every other value
//! checked against the JSON grammar and stepped over without building anything.
//!
//! It answers `None` for anything it does not take (a key with an escape, nesting deeper than
//! [`MAX_DEPTH`], any grammar error) and the caller then reads the record with serde, the
//! reference, whose answer (its event or its error) stands. Where it answers `Some`, serde
//! reads the same values from the same record: it checks exactly what serde checks when it
//! steps over a value (string escapes by their shape, control characters, the number grammar,
//! literals, trailing text) and keeps the last of duplicate keys as serde does. The property
//! tests in `tests.rs` compare the two on generated and mutated records.

use super::tree::{Node, Tree};
use super::value::Raw;
use crate::parse::json_fast::{ascii_string, number, string_stop};

/// Nesting the scanner follows; deeper records go to serde (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// Where the values on a schema's paths go: raw slots to convert later, or the event itself.
pub(super) trait Leaves<'a> {
    /// The value of a key on a path, read by leaves `ids`; `None`: not taken.
    fn put(&mut self, ids: &[usize], v: Raw<'a>) -> Option<()>;
}

impl<'a> Leaves<'a> for [Raw<'a>] {
    #[inline]
    fn put(&mut self, ids: &[usize], v: Raw<'a>) -> Option<()> {
        for &id in ids {
            *self.get_mut(id)? = v.clone();
        }
        Some(())
    }
}

/// Reads `text` (one JSON object) into `out` on `tree`'s paths; `None`: not taken.
pub(super) fn read<'a, L: Leaves<'a> + ?Sized>(
    text: &'a str,
    tree: &Tree,
    out: &mut L,
) -> Option<()> {
    Scan::<false> {
        t: text,
        b: text.as_bytes(),
        i: 0,
    }
    .record(tree, out)
}

/// As [`read`], for a record not checked to be UTF-8: one whose strings hold only ASCII (the
/// usual record) needs no check, the string scan finding any other byte on the way; `None`
/// also for a byte >= 0x80 in a string (the caller checks the record and reads it with
/// [`read`]). Keys of the tree are matched in place, as their own bytes: a record taken here
/// is ASCII but for them, and UTF-8.
pub(super) fn read_ascii<'a, L: Leaves<'a> + ?Sized>(
    line: &'a [u8],
    tree: &Tree,
    out: &mut L,
) -> Option<()> {
    Scan::<true> {
        t: "",
        b: line,
        i: 0,
    }
    .record(tree, out)
}

/// `ASCII`: the record is not known to be UTF-8, `t` is empty, and strings holding a byte
/// >= 0x80 are not taken: every value the scan takes is then ASCII.
struct Scan<'a, const ASCII: bool> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a, const ASCII: bool> Scan<'a, ASCII> {
    fn record<L: Leaves<'a> + ?Sized>(mut self, tree: &Tree, out: &mut L) -> Option<()> {
        self.ws();
        self.object(Some(tree), out, 0)?;
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// The text of the value at `start..end` (with `ASCII` checked here: values other than
    /// plain strings and numbers are rare on a path).
    #[inline(always)]
    fn token(&self, start: usize, end: usize) -> Option<&'a str> {
        if ASCII {
            std::str::from_utf8(self.b.get(start..end)?).ok()
        } else {
            self.t.get(start..end)
        }
    }

    /// A string at `i` without escapes or control characters (with `ASCII`, of ASCII only):
    /// its text between the quotes; `None` (`i` unchanged) for any other value.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a str> {
        let from = self.i + 1;
        let (text, end) = if ASCII {
            ascii_string(self.b, from)?
        } else {
            let end = string_stop::<true>(self.b, from)?;
            if self.b.get(end) != Some(&b'"') {
                return None;
            }
            (self.t.get(from..end)?, end)
        };
        self.i = end + 1;
        Some(text)
    }

    /// Where a string from `from` stops (see [`string_stop`]): without `ASCII` the record is
    /// UTF-8 and only the JSON stops count; with it, also a byte >= 0x80.
    #[inline(always)]
    fn string_stop(&self, from: usize) -> Option<usize> {
        if ASCII {
            string_stop::<false>(self.b, from)
        } else {
            string_stop::<true>(self.b, from)
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        // Compact records have none: one comparison decides.
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// An object at `i`; keys on `tree` (when given) go to `out`.
    fn object<L: Leaves<'a> + ?Sized>(
        &mut self,
        tree: Option<&Tree>,
        out: &mut L,
        depth: usize,
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let node = match tree {
                Some(t) => self.tree_key(t)?,
                None => {
                    self.plain_key()?;
                    None
                }
            };
            // Compact records write the colon right after the key.
            if self.eat(b':').is_none() {
                self.ws();
                self.eat(b':')?;
            }
            self.ws();
            match node {
                Some(Node::Leaf(ids)) => {
                    let start = self.i;
                    let v = match self.peek()? {
                        // A string without escapes is kept as its text: nothing to decode later.
                        b'"' => match self.plain_string() {
                            Some(t) => Raw::Plain(t),
                            None => {
                                self.string()?;
                                Raw::Json(self.token(start, self.i)?)
                            }
                        },
                        // A number with its digits read: not parsed again from its text.
                        b'-' | b'0'..=b'9' => {
                            let (n, end) = number(self.b, start)?;
                            self.i = end;
                            Raw::Num(n)
                        }
                        _ => {
                            self.value(depth)?;
                            Raw::Json(self.token(start, self.i)?)
                        }
                    };
                    out.put(ids, v)?;
                }
                // serde reads a non-object here with `deserialize_any`, which also parses
                // numbers and unescapes strings (and can fail on them): it decides.
                Some(Node::Inner(t)) if self.peek() == Some(b'{') => {
                    self.object(Some(t), out, depth + 1)?
                }
                Some(Node::Inner(_)) => return None,
                None => self.value(depth)?,
            }
            // Whitespace before the comma is rare: it is stepped over here, not looked for first.
            loop {
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        break;
                    }
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => self.i += 1,
                    _ => return None,
                }
            }
        }
    }

    /// A key of an object on `tree`'s paths, and its node there (`None`: a key off the paths).
    /// A key of the tree is matched where it stands, its bytes and closing quote compared in
    /// place: no scan for its end first.
    #[inline(always)]
    fn tree_key<'t>(&mut self, tree: &'t Tree) -> Option<Option<&'t Node>> {
        if self.peek() == Some(b'"') {
            if let Some((node, len)) = self.b.get(self.i + 1..).and_then(|r| tree.find_at(r)) {
                self.i += len + 2;
                return Some(Some(node));
            }
        }
        let key = self.plain_key()?;
        // A plain key of the tree matched in place above, unless the tree is odd.
        Some(if tree.odd { tree.find(key) } else { None })
    }

    /// A key without escapes (serde unescapes keys before comparing; such a record goes there).
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let end = self.string_stop(start)?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.b.get(start..end)
    }

    /// Any value at `i`, checked and stepped over.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object::<[Raw<'a>]>(None, &mut [], depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => {
                self.i = number(self.b, self.i)?.1;
                Some(())
            }
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string; escapes are checked by their shape only, as serde does for a value it steps
    /// over or keeps raw (`\u` takes four hex digits, surrogates are not paired). `true`: it
    /// holds an escape.
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            self.i = self.string_stop(self.i)?;
            match self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(escaped);
                }
                b'\\' => self.i += 1,
                _ => return None,
            }
            escaped = true;
            match self.peek()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                b'u' => {
                    let hex = self.b.get(self.i + 1..self.i + 5)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i += 5;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
