//! How the nodes of a fleet share peer histories in Redis: the one source of the key, the fields
//! and the compare-and-set script, for the Rust host (`tlsfallback-mta`'s fleet), the C kit
//! (`tlsfallback_fleet`) and, through `kits/vectors/contract.json`, the Python and Node
//! kits. Every node that follows it can share a fleet with every other.
//!
//! A peer's shared copy is one hash, [`KEY_PREFIX`] + peer + [`KEY_SUFFIX`] (the braces are a
//! Redis Cluster hash tag, so the key's slot is the peer's; `v1` names the blob's schema), with a
//! version ([`VERSION_FIELD`]) and a history blob without a dance ([`BLOB_FIELD`]). A node reads
//! both (`HMGET`), merges with the engine (`policy_core::blob_to_share`, the component's
//! `fleet.blob-to-share`), writes nothing when the merge equals the copy, and otherwise runs
//! [`COMPARE_AND_SET_SCRIPT`] with the version it read, merging again with the copy that won
//! after a lost round, for at most [`CAS_ROUNDS`] rounds.

use std::time::Duration;

/// What a peer's key starts with.
pub const KEY_PREFIX: &str = "tlsfb:v1:{";
/// What a peer's key ends with.
pub const KEY_SUFFIX: &str = "}:h";
/// The field of a shared copy's version (a decimal counter each write bumps).
pub const VERSION_FIELD: &str = "v";
/// The field of a shared copy's history blob (memory only, no dance).
pub const BLOB_FIELD: &str = "b";
/// The Lua script that compare-and-sets a shared copy (its text says how it is called).
pub const COMPARE_AND_SET_SCRIPT: &str = include_str!("fleet_compare_and_set.lua");
/// Compare-and-set rounds a write tries before it gives up to a busier key.
pub const CAS_ROUNDS: u32 = 16;
/// The fewest seconds a shared copy lives after its last write.
pub const SHORTEST_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
