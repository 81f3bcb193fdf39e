//! The shared WIT mapping (`tlsfallback-wit-mapping`), expanded over wit-bindgen's generated
//! types: `From` impls between them and policy-core's.

use crate::generated::exports::tlsfallback::policy::engine as wit;

tlsfallback_wit_mapping::wit_mapping!();
