//! The grants and network parts of the run report, from constructed events.

use std::time::Duration;

use crate::context::ContextStore;
use crate::events::{Event, EventKind, EventSink, EventTap, PoolUsage, TimelineRecorder};
use crate::exec::{AgentReport, AgentStatus, RunReport};
use crate::report::{RunMetrics, html, markdown, prometheus, trace};
use crate::workflow::Workflow;

const SECRET: &str = "s3cret-t0ken-value";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(n: u64, kind: EventKind) -> Event {
    Event { at: ms(n), kind }
}

fn request(agent: &str, origin: &str, elapsed: u64, status: Option<u16>, error: Option<&str>) -> EventKind {
    EventKind::HttpRequest {
        agent: agent.into(),
        method: "GET".into(),
        origin: origin.into(),
        status,
        sent: 10,
        received: 100,
        elapsed: ms(elapsed),
        error: error.map(str::to_owned),
    }
}

fn refused(agent: &str, origin: &str, reason: &str) -> EventKind {
    EventKind::HttpRefused { agent: agent.into(), origin: origin.into(), reason: reason.into() }
}

const X: &str = "https://api.example.com:443";
const Y: &str = "http://127.0.0.1:8080";
const Z: &str = "https://evil.example:443";

/// `a` runs 10–110 ms: to X 20–50 and 40–60 (overlapping: 40 ms of wait),
/// to Y 80–90 (failed), refused Z twice. `b` runs 10–60 ms: to X 10–55,
/// and 190–200 (in no attempt of its: not waiting in its run time);
/// refused Z once, for another reason.
fn events() -> Vec<Event> {
    let started = |agent: &str| EventKind::AgentStarted { agent: agent.into(), attempt: 1 };
    let released = |agent: &str| EventKind::Released {
        agent: agent.into(),
        validating: None,
        pool: PoolUsage::default(),
    };
    vec![
        at(0, EventKind::RunStarted { run_id: "r".into(), workflow: "w".into(), agents: 2 }),
        at(5, EventKind::CacheSkipped { agent: "b".into(), because: "http grant".into() }),
        at(10, started("a")),
        at(10, started("b")),
        at(60, released("b")),
        // The run records agents' HTTP events late, out of order.
        at(55, request("b", X, 45, Some(200), None)),
        at(200, request("b", X, 10, Some(200), None)),
        at(30, refused("b", Z, "not on the allow-list")),
        at(50, request("a", X, 30, Some(200), None)),
        at(60, request("a", X, 20, Some(500), None)),
        at(90, request("a", Y, 10, None, Some("connection reset"))),
        at(95, refused("a", Z, "resolves to a private address")),
        at(96, refused("a", Z, "resolves to a private address")),
        at(110, released("a")),
        at(110, EventKind::AgentSucceeded { agent: "a".into(), elapsed: ms(100) }),
        at(110, EventKind::AgentSucceeded { agent: "b".into(), elapsed: ms(50) }),
    ]
}

fn workflow(dir: &std::path::Path) -> Workflow {
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("token.txt"), SECRET).unwrap();
    Workflow::parse_for_planning(
        r#"
agents:
  a:
    component: a.wasm
    grants:
      files: [{ path: docs, as: /docs, mode: read }]
      http: { allow: ["https://api.example.com", "http://127.0.0.1:*"] }
      variables: { API_URL: { value: "https://api.example.com" }, TOKEN: { file: token.txt, secret: true } }
  b:
    component: b.wasm
    wasi: true
    grants:
      http: { allow: ["https://api.example.com"] }
"#,
        dir.join("workflow.yaml"),
    )
    .expect("the workflow parses")
}

fn metrics() -> (RunMetrics, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let workflow = workflow(dir.path());
    let mut recorder = TimelineRecorder::new();
    for event in events() {
        recorder.record(&event);
    }
    let agent = |id: &str| AgentReport {
        agent: id.into(),
        status: AgentStatus::Succeeded { version: 1, keys: Vec::new() },
        elapsed: None,
        fuel_used: None,
        peak_memory: 0,
        attempts: 1,
        commit_wait: None,
        resumed: false,
        cached: false,
        renders: 0,
        renders_cached: 0,
    };
    let report = RunReport {
        run_id: "r".into(),
        workflow: "w".into(),
        elapsed: ms(210),
        agents: vec![agent("a"), agent("b")],
        groups: Vec::new(),
        validations: Vec::new(),
        conflicts: Vec::new(),
        cancelled: false,
        error: None,
        context: ContextStore::new().snapshot(),
        agent_cache: true,
        timeline: recorder.finish(ms(210)),
    };
    (RunMetrics::with_cores(&workflow, &report, 2), dir)
}

#[test]
fn each_agent_gets_its_own_requests_origins_refusals_and_network_wait() {
    let (m, _dir) = metrics();
    let a = m.agent("a").unwrap().network.clone().expect("a used the network");
    assert_eq!((a.requests, a.failed, a.refused, a.sent, a.received), (3, 1, 2, 30, 300));
    assert_eq!(a.wait, ms(50), "20–60 (overlaps merged) and 80–90");
    assert_eq!(a.network_latency_impact, Some(0.5), "50 of 100 ms");
    let origins: Vec<(&str, u32, u32, u32)> =
        a.origins.iter().map(|o| (o.origin.as_str(), o.requests, o.failed, o.refused)).collect();
    assert_eq!(origins, [(X, 2, 0, 0), (Y, 1, 1, 0), (Z, 0, 0, 2)], "in order of first contact");
    assert_eq!((a.origins[0].latency_median, a.origins[0].latency_max), (Some(ms(25)), Some(ms(30))));
    assert_eq!((a.origins[2].latency_median, a.origins[2].latency_max), (None, None), "refused only");
    assert_eq!(a.refusals.len(), 1);
    assert_eq!((a.refusals[0].reason.as_str(), a.refusals[0].count), ("resolves to a private address", 2));

    let b = m.agent("b").unwrap().network.clone().expect("b used the network");
    assert_eq!((b.requests, b.refused), (2, 1));
    assert_eq!(b.wait, ms(45), "10–55; the request after its attempt is not in its run time");
    assert!((b.network_latency_impact.unwrap() - 0.9).abs() < 1e-9, "45 of 50 ms: {b:?}");
    assert_eq!(b.refusals[0].reason, "not on the allow-list");

    let n = &m.network;
    assert_eq!((n.requests, n.failed, n.refused, n.wait), (5, 1, 3, ms(95)));
    let impact = n.network_latency_impact.expect("a run-level figure");
    assert!((impact - 95.0 / 150.0).abs() < 1e-9, "Σ wait / Σ run time: {impact}");
}

#[test]
fn grants_show_names_and_modes_never_a_value() {
    let (m, _dir) = metrics();
    let a = &m.agent("a").unwrap().grants;
    assert_eq!(
        a.summary(),
        "files /docs (read); http https://api.example.com, http://127.0.0.1:*; variables API_URL, TOKEN (secret)"
    );
    let b = m.agent("b").unwrap();
    assert_eq!(b.grants.summary(), "http https://api.example.com; real clocks");
    assert_eq!(b.cache_skipped.as_deref(), Some("http grant"));
    assert_eq!(m.agent("a").unwrap().cache_skipped, None);

    let json = m.to_json();
    let back: RunMetrics = serde_json::from_str(&json).expect("the report parses back");
    assert_eq!(back, m);
    for (what, text) in [
        ("json", json),
        ("markdown", markdown::render(&m)),
        ("html", html::render(&m)),
        ("trace", trace::render(&m)),
        ("prometheus", prometheus::render(&m)),
    ] {
        assert!(!text.contains(SECRET), "{what} shows the secret");
    }
}

#[test]
fn the_renderers_show_grants_origins_refusals_and_the_impact() {
    let (m, _dir) = metrics();
    let md = markdown::render(&m);
    assert!(md.contains("### Grants and network"), "{md}");
    assert!(md.contains("| b | `http https://api.example.com; real clocks` | http grant | 2 | 1 |"), "{md}");
    assert!(
        md.contains(&format!(
            "- `a` → {X}: 2 requests, 20 B sent, 200 B received, latency 25.0 ms / 30.0 ms"
        )),
        "{md}"
    );
    assert!(md.contains(&format!("  - refused 2× {Z}: resolves to a private address")), "{md}");
    assert!(md.contains("network latency impact 63 %"), "{md}");

    let page = html::render(&m);
    assert_eq!(page.matches("class=\"http\"").count(), 5, "a bar per request");
    assert_eq!(page.matches("class=\"refused\"").count(), 3, "a cross per refusal");
    assert!(page.contains("<table id=\"origins\">") && page.contains("no: http grant"), "{page}");
    assert!(page.contains("TOKEN (secret)"));

    let text = prometheus::render(&m);
    assert!(
        text.contains("ensemble_agent_network_latency_impact_ratio{workflow=\"w\",agent=\"a\"} 0.5"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "ensemble_agent_http_requests_total{{workflow=\"w\",agent=\"a\",origin=\"{X}\"}} 2"
    )));
    assert!(text.contains("ensemble_run_http_refused_total{workflow=\"w\"} 3"), "{text}");

    let chrome: serde_json::Value = serde_json::from_str(&trace::render(&m)).unwrap();
    let events = chrome["traceEvents"].as_array().unwrap();
    let http = events.iter().filter(|e| e["cat"] == "http").count();
    let refusals = events.iter().filter(|e| e["name"] == "http refused").count();
    assert_eq!((http, refusals), (5, 3));
}

#[test]
fn a_tapped_sink_keeps_http_events_for_the_run_and_nothing_else() {
    let sink = EventSink::new();
    let tap = EventTap::default();
    let runtime_side = sink.tapped(&tap);
    let mut listener = sink.subscribe();
    runtime_side.send(request("a", X, 1, Some(200), None));
    runtime_side.send(EventKind::Log {
        agent: "a".into(),
        level: crate::events::Level::Info,
        message: "hi".into(),
    });
    runtime_side.send(refused("a", Z, "no"));
    sink.send(request("untapped", X, 1, Some(200), None));
    let kept: Vec<_> = tap.take().into_iter().map(|e| e.kind).collect();
    assert!(
        matches!(&kept[..], [EventKind::HttpRequest { agent, .. }, EventKind::HttpRefused { .. }] if agent == "a"),
        "{kept:?}"
    );
    assert!(tap.take().is_empty(), "taken once");
    let mut heard = 0;
    while listener.try_recv().is_ok() {
        heard += 1;
    }
    assert_eq!(heard, 4, "still published to subscribers");
}
