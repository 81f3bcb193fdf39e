//! Postfix's socketmap protocol (`socketmap_table(5)`): one netstring request `NAME KEY`, one
//! netstring reply `OK data`, `NOTFOUND `, `TEMP reason`, `TIMEOUT reason` or `PERM reason`.
//!
//! Netstrings are framed by hand: the format is a length, a colon, the bytes and a comma, and
//! the crates that parse it either read unbounded lengths or want an async runtime; the server
//! must bound what one request can make it allocate.

use std::io::{self, BufRead, Write};

/// The longest request accepted, in bytes. Postfix's own limit on replies is 100,000; lookup keys
/// are next-hop names, far shorter.
pub const MAX_REQUEST_LEN: usize = 10_000;

/// The longest reply Postfix accepts (`socketmap_table(5)`), in bytes.
pub const MAX_REPLY_LEN: usize = 100_000;

/// Why a request could not be read. After any of these the stream is out of step, so the server
/// answers `PERM` and closes the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Reading the connection failed.
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
    /// The connection closed in the middle of a netstring.
    #[error("the connection closed in the middle of a netstring")]
    Truncated,
    /// The length prefix is not a decimal number followed by a colon.
    #[error("a netstring must start with its length in decimal and a colon, not {0:?}")]
    BadLength(String),
    /// The announced length is over [`MAX_REQUEST_LEN`].
    #[error("a request of {len} bytes is longer than the {max} this server accepts")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The netstring's data is not followed by a comma.
    #[error("the netstring's {0} bytes are not followed by a comma")]
    MissingComma(usize),
}

/// Reads one netstring; `Ok(None)` when the connection closed cleanly between requests.
///
/// # Errors
///
/// A [`FrameError`] naming what is wrong; never allocates more than `max` bytes.
pub fn read_netstring(
    reader: &mut impl BufRead,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut digits = Vec::with_capacity(8);
    let limit_digits = max.to_string().len();
    loop {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte) {
            Ok(0) if digits.is_empty() => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        match byte[0] {
            b':' if !digits.is_empty() => break,
            b'0'..=b'9' if digits.len() <= limit_digits => digits.push(byte[0]),
            other => {
                digits.push(other);
                return Err(FrameError::BadLength(
                    String::from_utf8_lossy(&digits).into_owned(),
                ));
            }
        }
    }
    // Only ASCII digits were pushed, at most one more than `max` has.
    let len: usize = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| FrameError::BadLength(String::from_utf8_lossy(&digits).into_owned()))?;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    let mut data = vec![0; len + 1];
    reader.read_exact(&mut data).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    if data.pop() != Some(b',') {
        return Err(FrameError::MissingComma(len));
    }
    Ok(Some(data))
}

/// Writes `payload` as one netstring.
///
/// # Errors
///
/// When writing fails.
pub fn write_netstring(writer: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    write!(writer, "{}:", payload.len())?;
    writer.write_all(payload)?;
    writer.write_all(b",")?;
    writer.flush()
}

/// One lookup: the map name from Postfix's `socketmap:inet:HOST:PORT:NAME`, and the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The map name.
    pub map: &'a str,
    /// The lookup key (for `smtp_tls_policy_maps`, the next-hop destination).
    pub key: &'a str,
}

impl<'a> Request<'a> {
    /// Parses a request's netstring data.
    ///
    /// # Errors
    ///
    /// A one-line reason, sent back to Postfix as `PERM`: not UTF-8, no space, an empty name
    /// or key, or control characters in the key.
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(data).map_err(|_| "the request is not UTF-8".to_owned())?;
        let (map, key) = text
            .split_once(' ')
            .ok_or_else(|| "a request is \"NAME KEY\": there is no space".to_owned())?;
        if map.is_empty() || key.is_empty() {
            return Err("a request is \"NAME KEY\": the name or the key is empty".to_owned());
        }
        if key.chars().any(|c| c.is_control() || c == ' ') {
            return Err("the key holds spaces or control characters".to_owned());
        }
        Ok(Self { map, key })
    }
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The key was found: the TLS policy for it.
    Found(String),
    /// No entry: Postfix goes on to its next table, then to its own default.
    NotFound,
    /// A temporary failure: Postfix defers the delivery.
    Temp(String),
    /// A permanent failure (a malformed request, a wrong map name).
    Perm(String),
}

impl Reply {
    /// The reply's netstring data.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (status, text) = match self {
            Self::Found(data) => ("OK", data.as_str()),
            Self::NotFound => ("NOTFOUND", ""),
            Self::Temp(reason) => ("TEMP", reason.as_str()),
            Self::Perm(reason) => ("PERM", reason.as_str()),
        };
        // A reason is descriptive text on one line; keep it within Postfix's limit.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_REPLY_LEN - status.len() - 1)
            .collect();
        format!("{status} {text}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        read_netstring(&mut &bytes[..], MAX_REQUEST_LEN)
    }

    #[test]
    fn netstrings_round_trip() {
        let mut out = Vec::new();
        write_netstring(&mut out, b"tlsfallback [127.0.0.1]:2525").unwrap();
        assert_eq!(out, b"28:tlsfallback [127.0.0.1]:2525,");
        assert_eq!(
            read(&out).unwrap().unwrap(),
            b"tlsfallback [127.0.0.1]:2525"
        );
        assert_eq!(read(b"").unwrap(), None);
        assert_eq!(read(b"0:,").unwrap().unwrap(), b"");
    }

    #[test]
    fn malformed_netstrings_are_named() {
        assert!(matches!(read(b"x:abc,"), Err(FrameError::BadLength(l)) if l == "x"));
        assert!(matches!(read(b":abc,"), Err(FrameError::BadLength(_))));
        assert!(matches!(read(b"3:abc;"), Err(FrameError::MissingComma(3))));
        assert!(matches!(read(b"5:abc"), Err(FrameError::Truncated)));
        assert!(matches!(read(b"12"), Err(FrameError::Truncated)));
        assert!(matches!(
            read(b"99999999999999999999999:"),
            Err(FrameError::BadLength(_))
        ));
        assert!(matches!(
            read(b"10001:"),
            Err(FrameError::TooLong { len: 10_001, .. })
        ));
    }

    proptest::proptest! {
        /// Any bytes from a peer: a request, a clean end, or a named error; never a panic, and
        /// never data longer than the limit.
        #[test]
        fn any_bytes_are_framed_or_refused(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..200)) {
            let mut input = &bytes[..];
            for _ in 0..10 {
                match read_netstring(&mut input, 50) {
                    Ok(Some(data)) => {
                        proptest::prop_assert!(data.len() <= 50);
                        let _ = Request::parse(&data);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn written_netstrings_read_back(payload in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            write_netstring(&mut out, &payload).unwrap();
            proptest::prop_assert_eq!(read(&out).unwrap(), Some(payload));
        }
    }

    #[test]
    fn requests_and_replies() {
        let request = Request::parse(b"tlspolicy example.com").unwrap();
        assert_eq!((request.map, request.key), ("tlspolicy", "example.com"));
        assert!(Request::parse(b"tlspolicy").is_err());
        assert!(Request::parse(b" example.com").is_err());
        assert!(Request::parse(b"tlspolicy a b").is_err());
        assert!(Request::parse(b"tlspolicy \xff").is_err());
        assert_eq!(Reply::NotFound.encode(), b"NOTFOUND ");
        assert_eq!(Reply::Found("none".into()).encode(), b"OK none");
        assert_eq!(Reply::Perm("bad\nline".into()).encode(), b"PERM bad line");
    }
}
