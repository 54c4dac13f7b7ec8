//! Tests of the HTML report.

use super::*;
use crate::report::AgentMetrics;

/// A run of `a<b>` (ran twice, failed then succeeded) and `c & d` (skipped) in group `g`.
fn sample() -> RunMetrics {
    serde_json::from_str(
        r#"{
  "run_id": "r1", "workflow": "w<x>", "outcome": "failed", "total_time": 0.5, "load_time": 0.0,
  "agents": [
{"agent": "a<b>", "outcome": "succeeded", "detail": null, "keys": ["k"], "cached": false, "resumed": false,
 "start": 0.01, "end": 0.3, "queue_wait": 0.01, "run_time": 0.25, "fuel_used": 1000, "peak_memory_bytes": 65536,
 "attempts": 2, "commit_wait": 0.001, "renders": 0, "renders_cached": 0, "earliest_start": 0.0, "slack": 0.0,
 "critical": true},
{"agent": "c & d", "outcome": "skipped", "detail": "needs \"a<b>\"", "keys": [], "cached": false,
 "resumed": false, "start": null, "end": null, "queue_wait": 0.0, "run_time": 0.0, "fuel_used": null,
 "peak_memory_bytes": 0, "attempts": 0, "commit_wait": null, "renders": 0, "renders_cached": 0,
 "earliest_start": 0.3, "slack": 0.2, "critical": false}
  ],
  "groups": [{"group": "g", "outcome": "succeeded", "detail": null, "agents": ["a<b>", "c & d"],
          "start": 0.0, "end": 0.4}],
  "parallelism": {"agent_time": 0.25, "average_concurrency": 0.5, "effective_concurrency": 1,
              "concurrency_limit": 4, "cores": 8, "widest_group": 1, "efficiency": 0.5},
  "commit_wait": {"total": 0.001, "max": 0.001, "max_agent": "a<b>"},
  "resources": {"cpu_units": 8, "memory_units": 8, "slots": 4, "cpu_average": 0.5, "memory_average": 0.5,
            "slots_average": 0.5, "cpu_peak": 1, "memory_peak": 1, "slots_peak": 1, "cpu_ratio": 0.06,
            "memory_ratio": 0.06, "slots_ratio": 0.12},
  "cache": {"agent_hits": 0, "agent_lookups": 1, "agent_hit_ratio": 0.0, "render_hits": 0, "renders": 0,
        "render_hit_ratio": null},
  "retries": {"attempts": 2, "retries": 1, "rate": 0.5},
  "validations": {"ran": 0, "failed": 0, "failure_rate": null, "list": []},
  "conflicts": {"commits": 1, "frequency": 0.0, "list": []},
  "decisions": [{"group": "g", "at": 0.4, "decision": "all_completed", "reason": "<all> done"}],
  "critical_path": {"agents": ["a<b>"], "length": 0.25, "coverage": 0.5,
                "bottleneck": {"agent": "a<b>", "run_time": 0.25, "share": 1.0}, "finding": "it's <slow>"},
  "error": null,
  "timeline": {
"spans": [
  {"lane": "g", "kind": "group", "start": 0.0, "end": 0.4, "outcome": "succeeded"},
  {"lane": "a<b>", "kind": "queued", "start": 0.0, "end": 0.01, "outcome": "admitted"},
  {"lane": "a<b>", "kind": "run", "start": 0.01, "end": 0.1, "attempt": 1, "outcome": "failed"},
  {"lane": "a<b>", "kind": "backoff", "start": 0.1, "end": 0.14},
  {"lane": "a<b>", "kind": "run", "start": 0.14, "end": 0.3, "attempt": 2, "outcome": "succeeded"},
  {"lane": "c & d", "kind": "queued", "start": 0.3, "end": 0.3, "outcome": "skipped"}
],
"marks": [
  {"lane": "a<b>", "kind": "commit", "at": 0.3, "detail": "v1: k"},
  {"lane": "g", "kind": "decision", "at": 0.4, "detail": "all_completed: <all> done"}
],
"pool": [], "end": 0.5
  }
}"#,
    )
    .expect("sample metrics parse")
}

#[test]
fn escape_escapes_markup_and_quotes() {
    assert_eq!(escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    assert_eq!(escape("plain ★"), "plain ★");
}

#[test]
fn durations_read_well() {
    assert_eq!(dur(Duration::from_micros(12_300)), "12.3 ms");
    assert_eq!(dur(Duration::from_millis(1200)), "1.20 s");
    assert_eq!(dur(Duration::ZERO), "0.0 ms");
    assert_eq!(dur(Duration::from_micros(45)), "45 µs");
}

#[test]
fn page_has_a_bar_per_attempt_escaped_text_and_no_network() {
    let page = render(&sample());
    assert!(page.contains(r#"<svg id="timeline" data-agents="2""#), "{page}");
    assert_eq!(page.matches(r#"class="bar"#).count(), 2);
    assert_eq!(page.matches(r#"data-agent="a&lt;b&gt;""#).count(), 2);
    assert!(page.contains("★ a&lt;b&gt;"), "critical agent starred");
    assert!(page.contains("c &amp; d") && page.contains("needs &quot;a&lt;b&gt;&quot;"));
    assert!(page.contains("&lt;all&gt; done") && page.contains("it&#39;s &lt;slow&gt;"));
    assert!(!page.contains("a<b>") && !page.contains("c & d") && !page.contains("w<x>"), "nothing raw");
    assert!(!page.contains("http://") && !page.contains("https://"), "self-contained");
    assert!(page.contains("skipped"), "the skipped agent is labelled");
}

#[test]
fn layout_survives_an_empty_run_and_a_wide_one() {
    let mut empty = sample();
    empty.total_time = Duration::ZERO;
    empty.timeline = Default::default();
    empty.agents.truncate(1);
    let page = render(&empty);
    assert!(!page.contains("NaN") && !page.contains("=\"inf") && !page.contains("=\"-inf"), "{page}");
    assert_eq!(page.matches(r#"class="bar"#).count(), 0);

    let mut wide = sample();
    let template: AgentMetrics = wide.agents[0].clone();
    wide.agents =
        (0..200).map(|i| AgentMetrics { agent: format!("agent-{i}"), ..template.clone() }).collect();
    wide.timeline.spans = (0..200)
        .map(|i| Span {
            lane: format!("agent-{i}"),
            kind: SpanKind::Run,
            start: Duration::from_millis(i),
            end: Duration::from_millis(i + 10),
            attempt: Some(1),
            subject: None,
            outcome: Some("succeeded".into()),
            http: None,
        })
        .collect();
    let page = render(&wide);
    assert!(page.contains(r#"data-agents="200""#));
    assert_eq!(page.matches(r#"class="bar"#).count(), 200);
    assert!(!page.contains("NaN"));
}
