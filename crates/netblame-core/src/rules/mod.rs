//! Diagnosis rules, one module per question a user asks. Each finding id has one constructor
//! and one set of thresholds (named constants saying where the number comes from), in the
//! module of its question; every module lists its specs in `FINDINGS` for the catalogue.
//!
//! | module | question |
//! |---|---|
//! | [`bound`] | did the receiver's window bind the sender (the shared test and its arithmetic) |
//! | [`sender`] | what bounded the sender: the receiver's window, the send buffer, cwnd, nothing to send |
//! | [`receiver`] | is the receiver keeping up: zero windows, a slow or CPU-bound reader |
//! | [`loss`] | were segments lost, and where: retransmissions, timeouts, ECN, queueing |
//! | [`setup`] | did connections get set up: SYN retransmissions, refusals, accept queues |
//! | [`buffers`] | are buffers and window scaling right for the path |
//! | [`host`] | does the host have the resources: softnet, memory, NIC, qdiscs, CPU |
//! | [`kernel`] | does this kernel version have a known issue |
//! | [`kernel_events`] | what did the kernel do, from its tracepoints |
//! | [`latency`] | what do latency probes say |
//! | [`phases`] | which phase of an http request holds its latency tail |
//! | [`timeout`] | did (or would) an application's timeout fire |

pub mod bound;
pub mod buffers;
pub mod host;
pub mod kernel;
pub mod kernel_events;
pub mod latency;
pub mod loss;
pub mod phases;
pub mod receiver;
pub mod sender;
pub mod setup;
pub mod timeout;
