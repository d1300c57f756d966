//! The black-box tests: the binary, the ledger's public interface, HTTP,
//! NATS, crashes and the browser. One test binary, shared helpers in
//! `tools` and `support`.

mod bench;
mod browser;
mod checkpoint;
mod cli;
mod connections;
mod contract;
mod crash;
mod decoders;
mod export;
mod group_node;
mod http;
mod live;
mod log;
mod nats;
mod openapi;
mod personal;
mod projector;
mod refusals;
mod reliability;
mod rules;
mod support;
mod tools;
