//! attractio's load generator as a library: simulated clients that speak the
//! shared wire protocol with raw JSON (so they drive any server speaking it,
//! including the seed-node baseline), the scenarios built from them, and the
//! statistics, reports and plots they produce. The `loadgen` binary is a thin
//! command line over [`scenario`]; tests drive the same functions in-process.

pub mod client;
pub mod metrics;
pub mod plot;
pub mod procfs;
pub mod raw;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod summary;
