//! The inbound stream's settings that the ledger holds it to: no
//! deduplication of its own, so that a conflicting re-publication of an id
//! always reaches the ledger (contract section 4).
//!
//! JetStream drops a message whose `Nats-Msg-Id` it has seen within the
//! stream's duplicate window, and acknowledges it to the publisher with
//! `duplicate: true`. nats-server refuses a window under 100 ms and reads
//! zero as its default of two minutes, except on a stream that sources
//! another: there, since nats-server 2.14, zero turns deduplication off
//! (`checkStreamCfg` keeps the zero, and `storeMsgIdLocked` remembers no
//! id). So `ROTATION_IN` sources `ROTATION_IN_ANCHOR`, a stream that stays
//! empty, and has a zero window. On an older server the ledger keeps the
//! smallest window, 100 ms, and says so in its log; `docs/nats.md` gives
//! what that leaves to publishers.

use async_nats::jetstream::stream;

use super::{IN_DUPLICATE_WINDOW as SMALLEST_WINDOW, Names};

/// The first nats-server release whose sourcing streams may have no
/// deduplication window.
const WITHOUT_WINDOW_SINCE: (u64, u64) = (2, 14);

/// Whether a nats-server of `version` (as its INFO gives it, e.g.
/// `2.15.1` or `2.14.0-RC.1`) can keep a stream without deduplication.
pub(crate) fn can_go_without_window(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|part| part.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= WITHOUT_WINDOW_SINCE,
        _ => false,
    }
}

impl Names {
    /// The stream `ROTATION_IN` sources, `ROTATION_IN_ANCHOR`.
    pub(crate) fn in_anchor_stream(&self) -> String {
        self.stream("IN_ANCHOR")
    }

    /// The stream `ROTATION_IN` sources so that JetStream lets it go
    /// without a window. Nothing is meant to be published to it; its
    /// subject lies outside `rotation.in.>`, and the source is filtered to
    /// `rotation.in.>`, so that even a message sent there never reaches the
    /// ledger.
    pub(crate) fn in_anchor_config(&self) -> stream::Config {
        stream::Config {
            name: self.in_anchor_stream(),
            description: Some(
                "Stays empty: ROTATION_IN sources it so that it may go without deduplication"
                    .into(),
            ),
            subjects: vec![format!("{}.in-anchor", self.prefix())],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_messages: 1,
            // In a group, on as many servers as ROTATION_IN: the writer
            // checks the anchor before it ingests, so an anchor on one
            // server would stop ingest whenever that server is down.
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    fn in_anchor_source(&self) -> stream::Source {
        stream::Source {
            name: self.in_anchor_stream(),
            filter_subject: Some(self.in_subjects()),
            ..Default::default()
        }
    }

    /// The inbound stream's configuration as the ledger needs it, from the
    /// one it has (made by the ledger, an earlier version or an operator),
    /// or `None` when it needs no change. Everything else an operator set
    /// is kept.
    pub(crate) fn inbound_update(
        &self,
        mut config: stream::Config,
        without_window: bool,
    ) -> Option<stream::Config> {
        if without_window {
            let anchor = self.in_anchor_stream();
            let sources = config.sources.get_or_insert_with(Vec::new);
            let anchored = sources.iter().any(|source| source.name == anchor);
            if anchored && config.duplicate_window.is_zero() {
                return None;
            }
            if !anchored {
                sources.push(self.in_anchor_source());
            }
            config.duplicate_window = std::time::Duration::ZERO;
            Some(config)
        } else if config.duplicate_window > SMALLEST_WINDOW || config.duplicate_window.is_zero() {
            // Zero, on a server that cannot go without a window, would
            // mean its default of two minutes.
            config.duplicate_window = SMALLEST_WINDOW;
            Some(config)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn servers_from_2_14_can_go_without_a_window() {
        for (version, expected) in [
            ("2.15.1", true),
            ("2.14.0", true),
            ("2.14.0-RC.1", true),
            ("3.0.0", true),
            ("2.12.4", false),
            ("2.10.22", false),
            ("", false),
            ("unknown", false),
        ] {
            assert_eq!(can_go_without_window(version), expected, "{version}");
        }
    }

    #[test]
    fn an_inbound_stream_with_a_window_is_anchored_and_loses_it() {
        let names = Names::new("rotation").expect("a valid prefix");
        let old = stream::Config {
            duplicate_window: Duration::from_secs(120),
            max_messages: 5_000_000,
            ..names.in_config()
        };
        let new = names.inbound_update(old, true).expect("a window to remove");
        assert_eq!(new.duplicate_window, Duration::ZERO);
        assert_eq!(new.max_messages, 5_000_000, "the operator's limit is kept");
        let sources = new.sources.clone().unwrap_or_default();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].name, "ROTATION_IN_ANCHOR");
        assert_eq!(names.inbound_update(new, true).map(|c| c.name), None);
    }

    #[test]
    fn an_older_server_keeps_the_smallest_window() {
        let names = Names::new("rotation").expect("a valid prefix");
        let two_minutes = stream::Config {
            duplicate_window: Duration::from_secs(120),
            ..names.in_config()
        };
        let narrowed = names
            .inbound_update(two_minutes, false)
            .expect("a window to narrow");
        assert_eq!(narrowed.duplicate_window, SMALLEST_WINDOW);
        assert_eq!(narrowed.sources.unwrap_or_default().len(), 0);
        let smallest = stream::Config {
            duplicate_window: SMALLEST_WINDOW,
            ..names.in_config()
        };
        assert_eq!(names.inbound_update(smallest, false).map(|c| c.name), None);
    }
}
