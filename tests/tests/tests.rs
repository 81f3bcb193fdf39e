//! The shipped component against the native engine, and the component's purity.

// Component and native policy-core give byte-identical responses on random requests.
mod differential;
// The jco-transpiled component in Node decides exactly like native policy-core.
mod jco;
// Operators' policy components: hostile ones contained, fail modes, the floor, the examples.
mod plugins;
// Loading the component: the precompiled-artifact cache, and a corrupt cache file.
mod loading;
// One source for names: every copy of the WIT's cases and version is the WIT's.
mod names;
// The shared vectors of the embedding kits: what native decides, and the component agrees.
mod vectors;
// The built component imports nothing, so it runs with no capability at all.
mod zero_imports;
