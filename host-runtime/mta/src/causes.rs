//! How an error of another crate is written into the message of one of this crate's: its text,
//! then the text of each error behind it, separated by `": "` (as the CLI prints a chain with
//! `{:#}`). This crate's errors carry their cause in their message and set no `source()`, so a
//! chain printer over them never prints a cause twice.

use std::error::Error;
use std::fmt;

/// `error` and every error behind it, as one line.
pub(crate) struct Causes<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_cause_is_written_once_in_order() {
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(Causes(&error).to_string(), "outer: inner");
    }
}
