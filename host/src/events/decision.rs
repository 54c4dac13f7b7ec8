//! What a group's smart barrier decided, and when.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secs;

/// What a group's smart barrier decided. In events (JSON) it is a map:
/// `{"kind": "extend_timeout", "by": seconds, "extension": n}`; in the
/// journal and the run report, its [`name`](Self::name) only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// Every member succeeded.
    AllCompleted,
    /// The stragglers reported progress recently: wait `by` longer
    /// (extension number `extension`).
    ExtendTimeout {
        /// How much longer.
        #[serde(with = "secs")]
        by: Duration,
        /// Which extension this is, from 1.
        extension: u32,
    },
    /// Go on with what completed: stragglers cancelled, defaults filled.
    ContinueWithPartial,
    /// Re-run the members that did not succeed one at a time, each alone with
    /// the whole pool. This is also the administrator notification.
    FallbackSequential,
    /// The success criterion holds without a strategy (failed members get
    /// their defaults).
    CriterionMet,
    /// The group failed: its members' dependents are skipped.
    GroupFailed,
}

impl Decision {
    /// The decision's kind in snake case (`extend_timeout`), as the journal
    /// and the run report name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AllCompleted => "all_completed",
            Self::ExtendTimeout { .. } => "extend_timeout",
            Self::ContinueWithPartial => "continue_with_partial",
            Self::FallbackSequential => "fallback_sequential",
            Self::CriterionMet => "criterion_met",
            Self::GroupFailed => "group_failed",
        }
    }

    /// The decision named `name` (see [`name`](Self::name)); an
    /// `extend_timeout` read back by name has lost its extension (`by` 0,
    /// `extension` 0).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "all_completed" => Self::AllCompleted,
            "extend_timeout" => Self::ExtendTimeout { by: Duration::ZERO, extension: 0 },
            "continue_with_partial" => Self::ContinueWithPartial,
            "fallback_sequential" => Self::FallbackSequential,
            "criterion_met" => Self::CriterionMet,
            "group_failed" => Self::GroupFailed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One decision of a group's barrier: in the run's report
/// ([`GroupReport`](crate::exec::GroupReport)), and as the journal keeps it
/// (this type's serde form is the journal's record: the decision by name,
/// the time in whole milliseconds as `at_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The group's name.
    pub group: String,
    /// What the barrier decided.
    #[serde(with = "by_name")]
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// Time since the run started.
    #[serde(rename = "at_ms", with = "millis")]
    pub at: Duration,
}

/// A [`Decision`] as its [`name`](Decision::name).
pub(crate) mod by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Decision;

    pub fn serialize<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
        let name = String::deserialize(d)?;
        Decision::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown barrier decision `{name}`")))
    }
}

/// A [`Duration`] as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_is_read_back_by_its_name() {
        let all = [
            Decision::AllCompleted,
            Decision::ExtendTimeout { by: Duration::ZERO, extension: 0 },
            Decision::ContinueWithPartial,
            Decision::FallbackSequential,
            Decision::CriterionMet,
            Decision::GroupFailed,
        ];
        for d in all {
            assert_eq!(Decision::from_name(d.name()), Some(d.clone()));
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!(Decision::from_name("nope"), None);
    }

    #[test]
    fn a_record_keeps_the_journals_wire_format() {
        let record = DecisionRecord {
            group: "g".into(),
            decision: Decision::ContinueWithPartial,
            reason: "r".into(),
            at: Duration::from_millis(1500),
        };
        let bytes = rmp_serde::to_vec_named(&record).expect("encodes");
        let wire: rmpv::Value = rmp_serde::from_slice(&bytes).expect("msgpack");
        assert_eq!(
            wire.to_string(),
            r#"{"group": "g", "decision": "continue_with_partial", "reason": "r", "at_ms": 1500}"#
        );
        assert_eq!(rmp_serde::from_slice::<DecisionRecord>(&bytes).expect("decodes"), record);
    }
}
