//! `docs/contract.md` is the promise users build against: these tests fail
//! when the code and it diverge (the routes the HTTP router serves, the
//! verbs `--help` lists, the error codes).

use std::path::Path;
use std::process::Command;

use rotation_events::ErrorCode;

use crate::support::binary;

fn contract() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/contract.md");
    std::fs::read_to_string(&path).expect("docs/contract.md is in the repository")
}

/// The paths the router serves, as `app` in `src/http/mod.rs` names them,
/// with axum's `{name}` written as the contract's `<name>`.
fn served_routes() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs");
    let source = std::fs::read_to_string(path).expect("the router's source");
    let routes: Vec<String> = source
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|route| route.replace('{', "<").replace('}', ">"))
        .collect();
    assert!(routes.len() >= 10, "the router's routes: {routes:?}");
    routes
}

#[test]
fn every_route_the_router_serves_is_in_the_contract() {
    let contract = contract();
    for route in served_routes() {
        assert!(
            contract.contains(&format!("`GET {route}"))
                || contract.contains(&format!("`POST {route}"))
                || contract.contains(&format!("{route}`")),
            "{route} is served but docs/contract.md does not name it"
        );
    }
}

#[test]
fn every_verb_help_lists_is_in_the_contract() {
    let out = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|verb| *verb != "help")
        .collect();
    assert!(verbs.len() >= 10, "{help}");
    let contract = contract();
    for verb in verbs {
        assert!(
            contract.contains(&format!("`{verb}`")) || contract.contains(&format!("`{verb} ")),
            "`rotation-ledger {verb}` exists but docs/contract.md does not name it"
        );
    }
}

#[test]
fn the_error_codes_are_the_contracts() {
    let contract = contract();
    let table: Vec<&str> = contract
        .split("### What is rejected, and the error codes")
        .nth(1)
        .expect("the error code section")
        .lines()
        .skip_while(|l| !l.starts_with("| code"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    let code: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        table, code,
        "docs/contract.md's error codes and ErrorCode::ALL"
    );
}
