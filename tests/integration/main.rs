//! The black-box tests: the binary, the ledger's public interface, HTTP,
//! NATS, crashes and the browser. One test binary, shared helpers in
//! `tools` and `support`.

mod support;
mod tools;
