//! `weir-sql`: Weir's SQL layer.
//!
//! The dialect ([`dialect`]) adds sources and materialized views to PostgreSQL's SQL; the
//! [`catalog`] persists definitions; [`planner`] turns a view's query into an engine
//! pipeline; [`database::Database`] ties catalog, engine and the serving DataFusion context
//! together for the wire protocol and tests.

pub mod alerts;
pub mod backfill;
pub mod bounded;
pub mod catalog;
pub mod checked;
pub mod copy;
pub mod database;
pub mod dialect;
pub mod error;
pub mod ewm;
pub mod functions;
pub mod information_schema;
pub mod interval_join;
pub mod limits;
pub mod max_future;
pub mod over_order;
pub mod percentile;
pub mod percentile_exact;
pub mod pg;
pub mod pg_compat;
pub mod pg_names;
pub mod planner;
pub mod retention;
pub mod scale;
pub mod serving;
pub mod session;
pub mod sink_check;
pub mod source_peek;
pub mod system;
pub mod system_archive;
pub mod types;
pub mod users;

pub use database::{Database, DatabaseOptions, Outcome, Prepared};
pub use error::{Result, SqlError};
pub use session::Session;
