use super::ParseError;
use crate::record::Event;

pub(super) fn parse(_line: &[u8]) -> Result<Event, ParseError> {
    Err(ParseError::new("not implemented"))
}
