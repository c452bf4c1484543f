//! `weir-engine`: the streaming core of Weir, in folders along the data path.
//!
//! - [`connector`]: the seams connectors implement — [`connector::source::Source`] hands out
//!   decoded Arrow batches, [`connector::sink::SinkWriter`] writes rows out — and the JSON
//!   decoder sources share.
//! - [`operator`]: the [`operator::Operator`] trait and its implementations (window
//!   aggregates, streaming `OVER` frames, alert rules, the stateless DataFusion plans between
//!   them). A view is a chain of operators.
//! - [`pipeline`]: the engine's lifecycle; per source, a reader thread and a processor thread
//!   that splits off late events ([`pipeline::watermark`]) and pushes each micro-batch
//!   through every view ([`pipeline::view::ViewRuntime`]) and into sink queues
//!   ([`pipeline::sink_queue`]).
//! - [`checkpoint`]: the checkpoint protocol, the store that writes and reads it, and the
//!   recovery plan that decides where each view and sink resumes.
//! - [`history`]: retention, Parquet history and its compaction.
//! - [`serving`]: what queries read — a view's emitted rows with a keyed index, a view as a
//!   DataFusion table, the counters and logs behind `weir.*`, `/metrics` and `/ready`.
//! - [`cluster`]: scale-out — which partitions a replica owns, and the leases that fence a
//!   replica that lost one.
//! - [`table`]: tables — keyed rows changed by `INSERT`/`UPDATE`/`DELETE`/`COPY`, stored in
//!   the data dir on every change, read by queries and joined by views (lookup joins).
//!
//! This crate parses no SQL and opens no sockets: `weir-sql` plans views into
//! [`pipeline::view::ViewPlan`]s and `weir-connectors` implements the connector traits.

pub mod checkpoint;
pub mod cluster;
pub mod connector;
pub mod error;
pub mod history;
pub mod operator;
mod paths;
pub mod pipeline;
pub mod serving;
pub mod table;

pub use error::{EngineError, Result};
