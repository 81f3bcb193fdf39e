//! An HTTPS server for MTA-STS policies (RFC 8461 section 3.3) signed by a test CA.
