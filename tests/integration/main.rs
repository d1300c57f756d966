//! The black-box tests: the binary, the ledger's public interface, HTTP,
//! NATS, crashes, the browser and a ledger group on a NATS cluster. One
//! test binary, shared helpers in `tools`, `support` and `cluster`.

mod bench;
mod browser;
mod checkpoint;
mod cli;
mod cluster;
mod connections;
mod contract;
mod crash;
mod decoders;
mod export;
mod group;
mod group_node;
mod group_pair;
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
mod snapshots;
mod support;
mod tools;
