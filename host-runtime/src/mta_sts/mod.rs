//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy fetched over HTTPS, its cache, and what it requires of each MX.
