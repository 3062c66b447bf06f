//! The accounting identity of a run: `read = parsed + dead_letter`, `parsed = on_time + late`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Record counters shared by the workers of a process.
#[derive(Debug, Default)]
pub struct Counters {
    read: AtomicU64,
    parsed: AtomicU64,
    dead_letter: AtomicU64,
    late: AtomicU64,
}

/// Records counted over some reads: `read = parsed + dead_letter`, and `late` of the parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub parsed: u64,
    pub dead_letter: u64,
    pub late: u64,
}

impl Counts {
    /// What was counted since `before` (an earlier value of the same counts).
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            read: self.read - before.read,
            parsed: self.parsed - before.parsed,
            dead_letter: self.dead_letter - before.dead_letter,
            late: self.late - before.late,
        }
    }
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    pub read: u64,
    pub parsed: u64,
    pub dead_letter: u64,
    pub on_time: u64,
    pub late: u64,
}

impl Counters {
    pub fn add(&self, c: Counts) {
        if c.read == 0 {
            return;
        }
        self.read.fetch_add(c.read, Ordering::Relaxed);
        self.parsed.fetch_add(c.parsed, Ordering::Relaxed);
        self.dead_letter.fetch_add(c.dead_letter, Ordering::Relaxed);
        self.late.fetch_add(c.late, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Accounting {
        let parsed = self.parsed.load(Ordering::Relaxed);
        let late = self.late.load(Ordering::Relaxed);
        Accounting {
            read: self.read.load(Ordering::Relaxed),
            parsed,
            dead_letter: self.dead_letter.load(Ordering::Relaxed),
            on_time: parsed - late.min(parsed),
            late,
        }
    }
}

impl Accounting {
    /// Reads the line [`Accounting`] displays as (e.g. a child process's last stderr line).
    pub fn parse(line: &str) -> Option<Accounting> {
        let rest = line.trim().strip_prefix("accounting:")?;
        let mut a = Accounting::default();
        let mut seen = 0;
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            let field = match k {
                "read" => &mut a.read,
                "parsed" => &mut a.parsed,
                "dead_letter" => &mut a.dead_letter,
                "on_time" => &mut a.on_time,
                "late" => &mut a.late,
                _ => return None,
            };
            *field = v;
            seen += 1;
        }
        (seen == 5).then_some(a)
    }

    /// The accounting of two parts of a job together.
    pub fn plus(&self, o: &Accounting) -> Accounting {
        Accounting {
            read: self.read + o.read,
            parsed: self.parsed + o.parsed,
            dead_letter: self.dead_letter + o.dead_letter,
            on_time: self.on_time + o.on_time,
            late: self.late + o.late,
        }
    }

    /// True when every record is accounted for.
    pub fn balanced(&self) -> bool {
        self.read == self.parsed + self.dead_letter && self.parsed == self.on_time + self.late
    }
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accounting: read={} parsed={} dead_letter={} on_time={} late={}",
            self.read, self.parsed, self.dead_letter, self.on_time, self.late
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_holds_and_prints() {
        let c = Counters::default();
        c.add(Counts {
            read: 10,
            parsed: 8,
            dead_letter: 2,
            late: 1,
        });
        c.add(Counts {
            read: 5,
            parsed: 5,
            dead_letter: 0,
            late: 0,
        });
        let a = c.snapshot();
        assert!(a.balanced());
        assert_eq!(
            a.to_string(),
            "accounting: read=15 parsed=13 dead_letter=2 on_time=12 late=1"
        );
        assert_eq!(Accounting::parse(&a.to_string()), Some(a));
        assert_eq!(Accounting::parse("accounting: read=1"), None);
        assert_eq!(a.plus(&a).read, 30);
    }
}
