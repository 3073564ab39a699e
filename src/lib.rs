//! opsbot: a terminal ChatOps assistant that plans MCP tool calls, governs them
//! with policy and approvals, runs them, and records everything in a
//! hash-chained audit log.
//!
//! The crate is the core; the binary (`src/main.rs`) is a thin edge over it.
//! Nothing outside `tui` knows about the terminal.

pub mod ask;
pub mod auth;
pub mod config;
pub mod driver;
pub mod engine;
pub mod estate;
pub mod eval;
pub mod mcp;
pub mod paths;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod runtime;
pub mod sandbox;
pub mod sanitize;
pub mod secrets;
pub mod serve;
pub mod session;
pub mod signals;
pub mod telemetry;
pub mod text;
pub mod tui;
pub mod usage;
