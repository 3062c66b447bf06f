//! The spec values that are one of a few words (`kind`, `start`, `mode`, ...): typed when the
//! file is read, so the compiler and runtime never parse a string again, and an unknown word
//! fails with the file position toml adds and the words allowed.

/// An enum of spec words: `Deserialize` from a string with an error naming what the value is
/// and listing the words, `word()` and `Display` back to the spec's spelling.
macro_rules! words {
    ($(#[$m:meta])* pub enum $name:ident ($what:literal) {
        $($(#[$vm:meta])* $variant:ident = $word:literal),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            /// The words of this value, in the order the spec reference lists them.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word as a spec writes it.
            pub fn word(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The value a spec word names.
            pub fn from_word(s: &str) -> Option<Self> {
                match s {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.word())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::from_word(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} `{s}` ({})",
                        $what,
                        Self::WORDS.join(", ")
                    ))
                })
            }
        }
    };
}

words! {
    /// `[source] kind`: where records come from.
    pub enum SourceKind ("source kind") {
        /// Kafka topic partitions.
        Kafka = "kafka",
        /// A file, or stdin.
        File = "file",
        /// Files as they appear in a folder.
        Directory = "directory",
        /// Lines from a TCP server.
        Socket = "socket",
        /// Synthetic logs or user events.
        Generator = "generator",
    }
}

words! {
    /// `[sink] kind`: where results go.
    pub enum SinkKind ("sink kind") {
        /// One Kafka topic per output.
        Kafka = "kafka",
        /// `<analysis> <json>` lines on stdout.
        Console = "console",
        /// One JSONL file per output.
        Files = "files",
    }
}

words! {
    /// `[sink] delivery` of a Kafka sink.
    pub enum Delivery ("delivery") {
        /// A restarted job may write some results again.
        AtLeastOnce = "at_least_once",
        /// Results in transactions committed with the job's progress.
        ExactlyOnce = "exactly_once",
    }
}

words! {
    /// `[source] start`: where a Kafka source starts reading a partition it has no checkpoint
    /// position for.
    pub enum StartAt ("start") {
        /// The oldest offset kept.
        Earliest = "earliest",
        /// Only records written after the job started.
        Latest = "latest",
        /// The consumer group's committed offset (earliest when there is none).
        Stored = "stored",
    }
}

words! {
    /// `[[analysis]] mode`: how results are emitted.
    pub enum Mode ("output mode") {
        /// Each window's final result once.
        Append = "append",
        /// Early results as data arrives, then corrections.
        Update = "update",
        /// The whole result table at each trigger.
        Complete = "complete",
    }
}

words! {
    /// `[[analysis]] input`: what an analysis reads.
    pub enum Input ("input") {
        /// Every parsed event on time for the analysis.
        Events = "events",
        /// The events that were late for some analysis.
        Late = "late",
    }
}

words! {
    /// `detect.kind`: the detector of a derived analysis.
    pub enum DetectKind ("detector") {
        /// Z-score of a column against its previous rows.
        Zscore = "zscore",
        /// Change of a column from its previous row.
        Lag = "lag",
        /// Rows whose key also has a row in another analysis.
        Intersect = "intersect",
    }
}

words! {
    /// `alert.severity`: how urgent an alert is.
    pub enum Severity ("severity") {
        /// Someone acts now.
        Critical = "critical",
        /// Someone looks soon.
        Warning = "warning",
        /// For the record.
        Info = "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct T {
        mode: Mode,
    }

    #[test]
    fn words_round_trip_and_unknown_ones_are_listed() {
        for w in Mode::WORDS {
            let t: T = toml::from_str(&format!("mode = \"{w}\"")).unwrap();
            assert_eq!(t.mode.word(), *w);
        }
        let e = toml::from_str::<T>("mode = \"upsert\"").err().unwrap();
        assert_eq!(
            e.message().trim(),
            "unknown output mode `upsert` (append, update, complete)"
        );
    }
}
