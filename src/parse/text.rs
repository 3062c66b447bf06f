//! Format `text`: each line is one record with the field `line`, stamped with the wall clock
//! when it is parsed (processing time, as Spark's socket and text sources give no event time).

use super::ParseError;
use crate::record::Event;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn parse(line: &[u8]) -> Result<Event, ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::new("not UTF-8"))?;
    Ok(Event {
        timestamp: now_ms(),
        line: Some(text.into()),
        ..Event::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Field, ValueRef};

    #[test]
    fn a_line_is_a_record_at_processing_time() {
        let before = now_ms();
        let e = parse(b"the quick  fox").unwrap();
        assert_eq!(e.get(Field::Line), ValueRef::Str("the quick  fox"));
        assert!(e.timestamp >= before && e.timestamp <= now_ms());
        assert_eq!(parse(b"\xff").unwrap_err().0, "not UTF-8");
    }
}
