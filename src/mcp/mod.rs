//! Connections to MCP servers: starting them, the tool catalog, and calls
//! with timeouts, progress and cancellation.
//!
//! Every server is independent: one that fails to start, exits or writes
//! garbage is reported with its name and last stderr lines while the others
//! keep working.

mod breaker;
mod cache;
mod catalog;
mod child;
mod client;
mod conn;
mod frames;
mod ledger;
mod lifecycle;
mod passthrough;
pub mod relay;
mod rounds;
mod servers;

pub use breaker::BreakerState;
pub use cache::{CachedTools, CatalogCache, age, fingerprint};
pub use catalog::{Annotations, Catalog, ToolInfo, definition_hash};
pub use conn::{CallError, CallOptions, Progress, READ_RESOURCE, ToolOutput, Truncation};
pub use passthrough::{Offered, Offerings};
pub use servers::{Listing, ServerEvent, ServerStatus, Servers, SpawnContext};
