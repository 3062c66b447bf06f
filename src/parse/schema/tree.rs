//! The JSON paths of a schema as a tree of keys, one level per object, looked up for every key
//! of every record: by its first byte, then word compares (no hashing, no `memcmp`).

use crate::record::value::bytes_eq;

/// The keys of one object level on the schema's paths.
#[derive(Debug, Default)]
pub(super) struct Tree {
    /// Sorted by their first byte once built ([`Tree::seal`]).
    keys: Vec<(String, Node)>,
    /// Per first byte, one more than the index of the first key starting with it (0: none).
    first: Vec<u16>,
    /// Some key holds a quote, a backslash or a control character, which a record writes
    /// escaped (or is empty): keys are then compared once read, never in place (see
    /// [`Tree::find_at`]).
    pub(super) odd: bool,
}

/// What a key leads to.
#[derive(Debug)]
pub(super) enum Node {
    /// A value: the leaves that read it (leaf 0 is the timestamp, leaf `i + 1` field `i`).
    Leaf(Vec<usize>),
    /// An object holding more of the paths.
    Inner(Tree),
}

impl Tree {
    /// The node of a key, as read (unescaped).
    #[inline]
    pub(super) fn find(&self, key: &[u8]) -> Option<&Node> {
        self.keys
            .iter()
            .find(|(k, _)| bytes_eq(k.as_bytes(), key))
            .map(|(_, n)| n)
    }

    /// The node of the key whose bytes, then a quote, start `rest` (the text after a key's
    /// opening quote), and the key's length: a key matched where it stands, without a scan
    /// for its end. Where it answers `None` and the tree is not `odd`, a plain key (one
    /// without escapes) is not in the tree.
    #[inline(always)]
    pub(super) fn find_at(&self, rest: &[u8]) -> Option<(&Node, usize)> {
        if self.odd {
            return None;
        }
        let c = *rest.first()?;
        let mut i = usize::from(*self.first.get(usize::from(c))?).checked_sub(1)?;
        while let Some((k, n)) = self.keys.get(i) {
            let k = k.as_bytes();
            if k.first() != Some(&c) {
                return None;
            }
            let len = k.len();
            if rest.get(len) == Some(&b'"') && bytes_eq(k, rest.get(..len)?) {
                return Some((n, len));
            }
            i += 1;
        }
        None
    }

    /// Adds the path `path` read by `leaf`.
    pub(super) fn insert(&mut self, path: &[String], leaf: usize) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(());
        };
        let at = match self.keys.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                let node = if rest.is_empty() {
                    Node::Leaf(Vec::new())
                } else {
                    Node::Inner(Tree::default())
                };
                self.keys.push((first.clone(), node));
                self.keys.len() - 1
            }
        };
        match (&mut self.keys[at].1, rest.is_empty()) {
            (Node::Leaf(ids), true) => {
                ids.push(leaf);
                Ok(())
            }
            (Node::Inner(t), false) => t.insert(rest, leaf),
            _ => Err(format!(
                "`{first}` is read both as a value and as an object holding other paths"
            )),
        }
    }

    /// Builds the first-byte dispatch of every level, once all paths are in.
    pub(super) fn seal(&mut self) {
        self.keys
            .sort_by_key(|(k, _)| k.as_bytes().first().copied());
        self.odd =
            self.keys.iter().any(|(k, _)| {
                k.is_empty() || k.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20)
            }) || self.keys.len() >= usize::from(u16::MAX);
        self.first = vec![0; 256];
        for (i, (k, n)) in self.keys.iter_mut().enumerate().rev() {
            if let (Some(&c), Ok(at)) = (k.as_bytes().first(), u16::try_from(i + 1)) {
                self.first[usize::from(c)] = at;
            }
            if let Node::Inner(t) = n {
                t.seal();
            }
        }
    }
}
