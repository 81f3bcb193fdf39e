//! The shipped component against the native engine, and the component's purity.

// Component and native policy-core give byte-identical responses on random requests.
mod differential;
// The built component imports nothing, so it runs with no capability at all.
mod zero_imports;
