//! `weir-engine`: the streaming core of Weir.
//!
//! Data flows `Source` → decoded Arrow batches ([`source::SourceBatch`]) → the per-source
//! [`pipeline`] thread, which splits off late events ([`watermark`]) and feeds every
//! materialized view ([`view::ViewPipeline`]). A view runs a pre-planned DataFusion physical
//! plan over each micro-batch ([`feed`]), folds the rows into per-window DataFusion
//! accumulators ([`aggregate`]) and emits windows once the watermark passes their end.
//! Emitted rows live in [`state::ViewState`], served to queries as a DataFusion table with a
//! keyed index ([`state::ViewTable`]).
//!
//! This crate parses no SQL and opens no sockets: `weir-sql` plans views into
//! [`view::ViewPlan`]s and `weir-connectors` implements [`source::Source`].

pub mod aggregate;
pub mod alert;
pub mod checkpoint;
pub mod decode;
pub mod error;
pub mod feed;
pub mod history;
pub mod over;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod state;
pub mod system;
pub mod view;
pub mod watermark;
pub mod window;

pub use error::{EngineError, Result};
