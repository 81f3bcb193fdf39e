//! The host's DNS: A/AAAA, MX, TLSA and TXT with DNSSEC status, on hickory-resolver.
