//! The Frictionless Data Package (v2) descriptor: the resources with their
//! table schemas, generated from the data dictionary, and the provenance
//! that lets a reader reproduce and check the export.

use std::collections::{BTreeMap, BTreeSet};

use chrono::SecondsFormat;
use rotation_projections::dataset::DEFINITIONS_VERSION;
use serde::Serialize;

use super::dictionary::{Column, ColumnType, TABLES, Table};
use super::package::Written;
use super::pseudonym::{PSEUDONYM_PATTERN, PSEUDONYMISATION_METHOD, PSEUDONYMISED, key_id};
use super::{ExportOptions, ProvenanceCheckpoint};

/// The Data Package descriptor. Structs rather than a JSON map keep the
/// properties in a reader's order (name and schema first, provenance last).
#[derive(Serialize)]
pub(super) struct Package<'a> {
    #[serde(rename = "$schema")]
    profile: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    resources: Vec<Resource<'a>>,
    provenance: Provenance<'a>,
}

/// A tabular resource. It says so three ways: `type: table` is Data Package
/// v2's, the resource's own `$schema` lets readers that look at resources
/// alone find its version, and the v1 `profile` lets v1 readers (such as
/// R's frictionless 1.x) read its schema; v2 readers ignore the `profile`
/// when `$schema` is present.
#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "$schema")]
    profile_url: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    profile: &'static str,
    path: &'a str,
    title: &'static str,
    description: &'static str,
    format: &'static str,
    mediatype: &'static str,
    encoding: &'static str,
    bytes: u64,
    hash: String,
    schema: TableSchema,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TableSchema {
    fields: Vec<Field>,
    primary_key: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    foreign_keys: Vec<ForeignKey>,
    missing_values: [&'static str; 1],
}

#[derive(Serialize)]
struct Field {
    name: &'static str,
    #[serde(rename = "type")]
    kind: ColumnType,
    description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    categories: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Constraints::is_empty")]
    constraints: Constraints,
}

#[derive(Serialize, Default)]
struct Constraints {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unique: bool,
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    values: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<&'static str>,
}

impl Constraints {
    fn is_empty(&self) -> bool {
        !self.required
            && !self.unique
            && self.values.is_none()
            && self.minimum.is_none()
            && self.maximum.is_none()
            && self.pattern.is_none()
    }
}

#[derive(Serialize)]
struct ForeignKey {
    fields: [&'static str; 1],
    reference: Reference,
}

#[derive(Serialize)]
struct Reference {
    resource: &'static str,
    fields: [&'static str; 1],
}

#[derive(Serialize)]
struct Provenance<'a> {
    head_position: u64,
    head_hash: &'a str,
    as_of: String,
    reference_date: String,
    /// `null` when every partnership was exported.
    partnerships: Option<&'a BTreeSet<String>>,
    definitions_version: &'static str,
    program: &'static str,
    program_version: &'a str,
    pseudonymisation: Pseudonymisation,
    rows: BTreeMap<&'static str, usize>,
    sha256: BTreeMap<&'a str, &'a str>,
    /// The signed checkpoint of the tree at `head_position`, with its
    /// verifier key: what proves which log the dataset came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a ProvenanceCheckpoint>,
}

#[derive(Serialize)]
struct Pseudonymisation {
    method: &'static str,
    key_id: String,
    columns: [&'static str; 4],
    input: &'static str,
    output: &'static str,
}

fn field(column: &Column, table: &Table) -> Field {
    let values = column.values.map(|values| values());
    let is_pseudonym = PSEUDONYMISED.contains(&column.name);
    Field {
        name: column.name,
        kind: column.kind,
        description: column.description,
        categories: values.clone(),
        constraints: Constraints {
            required: column.required,
            unique: column.name == table.key,
            values,
            minimum: column.range.map(|(low, _)| low),
            maximum: column
                .range
                .and_then(|(_, high)| (high != i64::MAX).then_some(high)),
            pattern: is_pseudonym.then_some(PSEUDONYM_PATTERN),
        },
    }
}

pub(super) fn descriptor<'a>(
    options: &'a ExportOptions,
    head_position: u64,
    head_hash: &'a str,
    written: &'a [Written; 3],
    checkpoint: Option<&'a ProvenanceCheckpoint>,
) -> Package<'a> {
    let resources = TABLES
        .iter()
        .zip(written)
        .map(|(table, w)| Resource {
            profile_url: "https://datapackage.org/profiles/2.0/dataresource.json",
            name: table.name,
            kind: "table",
            profile: "tabular-data-resource",
            path: &w.file,
            title: table.title,
            description: table.description,
            format: "csv",
            mediatype: "text/csv",
            encoding: "utf-8",
            bytes: w.bytes,
            hash: format!("sha256:{}", w.sha256),
            schema: TableSchema {
                fields: table.columns.iter().map(|c| field(c, table)).collect(),
                primary_key: vec![table.key],
                foreign_keys: table
                    .references
                    .iter()
                    .map(|(column, target)| ForeignKey {
                        fields: [column],
                        reference: Reference {
                            resource: target,
                            fields: [column],
                        },
                    })
                    .collect(),
                missing_values: [""],
            },
        })
        .collect();
    Package {
        profile: "https://datapackage.org/profiles/2.0/datapackage.json",
        name: "rotation-ledger-evaluation",
        title: "Job rotation evaluation dataset",
        description: "Jobseekers, releases and substitutions of job rotation schemes, folded from the rotation ledger's committed events as recorded by as_of, with outcomes judged at reference_date. Identifiers are keyed pseudonyms. The definitions of every column are in the field descriptions and in the project's docs/datasets.md.",
        resources,
        provenance: Provenance {
            head_position,
            head_hash,
            as_of: options.as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            reference_date: options.reference_date.to_string(),
            partnerships: options.partnerships.as_ref(),
            definitions_version: DEFINITIONS_VERSION,
            program: "rotation-ledger",
            program_version: &options.program_version,
            pseudonymisation: Pseudonymisation {
                method: PSEUDONYMISATION_METHOD,
                key_id: key_id(&options.key),
                columns: PSEUDONYMISED,
                input: "the id as a lower-case hyphenated UUID",
                output: "the first 16 lower-case hex characters of the HMAC",
            },
            rows: TABLES
                .iter()
                .zip(written)
                .map(|(table, w)| (table.name, w.rows))
                .collect(),
            sha256: written
                .iter()
                .map(|w| (w.file.as_str(), w.sha256.as_str()))
                .collect(),
            checkpoint,
        },
    }
}
