//! `kind = "generator"`: synthetic logs or user events.

use super::super::compile::Ctx;
use crate::parse::Format;
use crate::spec::SourceSpec;
use crate::Error;

/// `[source]` settings of `kind = "generator"`.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// How many events.
    pub events: u64,
    /// The generator's seed.
    pub seed: u64,
    /// Events per wall-clock second, event times starting now; `None`: as fast as possible.
    pub rate: Option<f64>,
}

impl GeneratorConfig {
    /// The `[source]` keys this kind takes besides `kind`, `format` and `max_record_bytes`.
    pub(super) const KEYS: &'static [&'static str] = &["events", "seed", "rate"];

    pub(super) fn compile(s: &SourceSpec, cx: &Ctx<'_>) -> Result<GeneratorConfig, Error> {
        if !matches!(s.format.get_ref(), Format::Json | Format::UserEvents) {
            return cx.err(
                s.format.span(),
                "source.format",
                "the generator writes `json` logs or `user-events`",
            );
        }
        let rate = match &s.rate {
            Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                return cx.err(
                    r.span(),
                    "source.rate",
                    "must be a positive number of events per second",
                )
            }
            r => r.as_ref().map(|r| *r.get_ref()),
        };
        Ok(GeneratorConfig {
            events: s.events.as_ref().map_or(100_000, |v| *v.get_ref()),
            seed: s.seed.as_ref().map_or(42, |v| *v.get_ref()),
            rate,
        })
    }

    /// What `logflow check` says it reads.
    pub fn describe(&self) -> String {
        let (events, seed) = (self.events, self.seed);
        match self.rate {
            Some(r) => format!("generator ({events} events, seed {seed}, {r} per second from now)"),
            None => format!("generator ({events} events, seed {seed})"),
        }
    }

    /// Why checkpoints cannot cover it, if they cannot.
    pub fn checkpoint_refusal(&self) -> Option<&'static str> {
        self.rate.map(|_| {
            "checkpoints need a source that can be read again: not a paced generator \
             (its event times follow the clock)"
        })
    }
}
