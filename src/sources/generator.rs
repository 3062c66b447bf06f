//! The built-in generator as a source partition (synthetic logs or user events, in-process).
