//! A DNSSEC-signed fake root with signed, unsigned and broken children, served by NSD, with unbound validating in front.
