//! policy-core's behaviour, as users rely on it. One test binary; each module says what it covers.

// A simulated peer whose clock is a field the test advances, one delivery at a time.
mod harness;
// Every built-in peer preset over weeks of simulated mail.
mod scenarios;
// The simulation as a stepper: its refusals, the queue's backoff, the timeline's blocks.
mod stepper;
// The floor: DANE, MTA-STS, REQUIRETLS, TLS-Required: No, SASL and the operator profiles.
mod floors;
// Invariants over random policies, contexts, histories and outcome sequences.
mod properties;
// Version-1 history blobs that must keep decoding, and unreadable blobs.
mod history;
// The fleet merge: its laws, the floor it never lowers, and nodes converging.
mod merge;
