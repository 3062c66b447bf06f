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
use crate::parse::json_fast::string_stop;

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
    let mut s = Scan {
        t: text,
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    s.object(Some(tree), out, 0)?;
    s.ws();
    (s.i == s.b.len()).then_some(())
}

struct Scan<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
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
                    // A string without escapes is kept as its text: nothing to decode later.
                    let v = if self.peek() == Some(b'"') && !self.string()? {
                        Raw::Plain(self.t.get(start + 1..self.i - 1)?)
                    } else {
                        if self.i == start {
                            self.value(depth)?;
                        }
                        Raw::Json(self.t.get(start..self.i)?)
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
        let end = string_stop::<true>(self.b, start)?;
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
            b'-' | b'0'..=b'9' => self.number(),
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
            self.i = string_stop::<true>(self.b, self.i)?;
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

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    #[inline(always)]
    fn digits(&mut self) {
        let rest = self.b.get(self.i..).unwrap_or_default();
        self.i += rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }
}

#[cfg(test)]
mod tests;
