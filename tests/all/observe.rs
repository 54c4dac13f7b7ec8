//! Seeing a run: the report's metrics against what the events say happened,
//! the trace as trace-event JSON, the Prometheus exposition, and the CLI's
//! `--events json`, `--report`, `--trace`, `--metrics` and `report`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ensemble::cache::AgentCache;
use ensemble::events::{MarkKind, SpanKind};
use ensemble::report;
use ensemble::{Event, EventKind, RunMetrics, RunOptions};
use ensemble_tests::{Project, busy, clocked, fails_first, rejecting_validator, renderer, writer};
use serde_json::Value;

use crate::{drain, run_cli};

/// `short` and `long` (20× the loop) side by side, one agent at a time;
/// `join` needs both and fails its first attempt; `checker` validates `join`
/// and rejects it.
fn known_shape(project: &Project) -> ensemble::Workflow {
    project
        .component("short", &busy("short.value", 3_000_000))
        .component("long", &busy("long.value", 60_000_000))
        .component("join", &fails_first(1, "join.value"))
        .component("checker", &rejecting_validator("checker.value"));
    project.workflow(
        "resources: {max_concurrent: 1}
agents:
  short: {component: short.wasm}
  long: {component: long.wasm}
  join:
    component: join.wasm
    needs: [short, long]
    retry: {attempts: 2, backoff: 10ms}
  checker: {component: checker.wasm, needs: [{agent: join, kind: validation}]}
",
    )
}

/// Per agent, from the raw events: the sum of its run attempts (started →
/// released) and of its queue waits (queued → admitted).
fn measured(events: &[Event]) -> HashMap<String, (Duration, Duration)> {
    let origin =
        events.iter().find(|e| matches!(e.kind, EventKind::RunStarted { .. })).expect("run started").at;
    let at = |e: &Event| e.at - origin;
    let (mut started, mut queued) = (HashMap::new(), HashMap::new());
    let mut totals: HashMap<String, (Duration, Duration)> = HashMap::new();
    for e in events {
        match &e.kind {
            EventKind::Queued { agent } => {
                queued.insert(agent.clone(), at(e));
            }
            EventKind::Admitted { agent, validating: None, .. } => {
                let since = queued.remove(agent).expect("admitted after queued");
                totals.entry(agent.clone()).or_default().1 += at(e) - since;
            }
            EventKind::AgentStarted { agent, .. } => {
                started.insert(agent.clone(), at(e));
            }
            EventKind::Released { agent, validating: None, .. } => {
                let since = started.remove(agent).expect("released after started");
                totals.entry(agent.clone()).or_default().0 += at(e) - since;
            }
            _ => {}
        }
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_agrees_with_what_the_events_say_happened() {
    let project = Project::new();
    let workflow = known_shape(&project);
    let options = RunOptions::default();
    let mut rx = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    let events = drain(&mut rx);
    let m = report.metrics(&workflow);
    let agent = |id: &str| m.agent(id).unwrap_or_else(|| panic!("{id} reported"));

    // Run times and queue waits are exactly what the events measure.
    let measured = measured(&events);
    for id in ["short", "long", "join", "checker"] {
        let (run, queue) = measured[id];
        assert_eq!((agent(id).run_time, agent(id).queue_wait), (run, queue), "{id}");
        assert!(!run.is_zero(), "{id} ran");
    }
    assert!(agent("long").run_time > agent("short").run_time, "20× the loop takes longer");

    // One agent at a time: runs never overlap, so the efficiency is their
    // share of the wall time, with an effective concurrency of one.
    let p = &m.parallelism;
    assert_eq!(p.effective_concurrency, 1);
    let total: Duration = m.agents.iter().map(|a| a.run_time).sum();
    assert_eq!(p.agent_time, total);
    assert!(total <= m.total_time, "{total:?} of {:?}", m.total_time);
    assert!((p.efficiency - total.as_secs_f64() / m.total_time.as_secs_f64()).abs() < 1e-12);
    assert!(p.efficiency > 0.0 && p.efficiency <= 1.0);
    assert_eq!(m.resources.slots_peak, 1);
    assert!(m.resources.slots_ratio > 0.0 && m.resources.slots_ratio <= 1.0, "{:?}", m.resources);

    // The measured critical path: the longer need, then the join.
    let cp = &m.critical_path;
    assert_eq!(cp.agents, ["long", "join"]);
    assert_eq!(cp.length, agent("long").run_time + agent("join").run_time);
    assert_eq!(agent("short").slack, agent("long").run_time - agent("short").run_time);
    assert_eq!(agent("checker").slack, cp.length - agent("checker").run_time);
    assert!(agent("long").slack.is_zero() && agent("join").slack.is_zero());
    assert!(agent("long").critical && !agent("short").critical);
    let bottleneck = cp.bottleneck.as_ref().expect("a bottleneck");
    assert_eq!(bottleneck.agent, "long");

    // Retries, validations, commits, commit waits.
    assert_eq!(agent("join").attempts, 2);
    assert_eq!((m.retries.attempts, m.retries.retries), (5, 1));
    assert_eq!(m.retries.rate, Some(0.2));
    assert_eq!((m.validations.ran, m.validations.failed, m.validations.failure_rate), (1, 1, Some(1.0)));
    assert_eq!(m.validations.list[0].findings[0].message, "fixture disagrees!");
    assert_eq!((m.conflicts.commits, m.conflicts.list.len()), (4, 0));
    let waits: Duration = m.agents.iter().filter_map(|a| a.commit_wait).sum();
    assert_eq!(m.commit_wait.total, waits);
    assert!(m.agents.iter().all(|a| a.commit_wait.is_some()), "every agent committed");

    // The timeline: join's failed attempt, its backoff, its second attempt.
    let join: Vec<_> = m.timeline.lane("join").filter(|s| s.kind != SpanKind::Queued).collect();
    let kinds: Vec<_> = join.iter().map(|s| (s.kind, s.outcome.as_deref())).collect();
    assert_eq!(
        kinds,
        [(SpanKind::Run, Some("failed")), (SpanKind::Backoff, None), (SpanKind::Run, Some("succeeded"))]
    );
    assert!(join[1].duration() >= Duration::from_millis(5), "jittered 10 ms backoff: {:?}", join[1]);
    let validate = m.timeline.lane("checker").find(|s| s.kind == SpanKind::Validate).expect("validate span");
    assert_eq!((validate.subject.as_deref(), validate.outcome.as_deref()), (Some("join"), Some("rejected")));

    // The JSON report round-trips.
    let back: RunMetrics = serde_json::from_str(&m.to_json()).expect("report JSON parses");
    assert_eq!(back.critical_path.agents, m.critical_path.agents);
    assert_eq!(back.agents.len(), 4);

    let summary = report::markdown::render(&m);
    assert!(summary.contains("long → join"), "{summary}");
    assert!(summary.contains("Bottleneck: `long`"), "{summary}");
    assert!(summary.contains("| join ★ | ok |"), "{summary}");
    assert!(summary.contains("retries: 1 of 5 attempts (20 %)"), "{summary}");
}

/// The report's times against clocks outside the engine: two agents, one
/// after the other, each spinning at least 60 ms on WASI's clock and saying
/// how long it spun. Each run time covers what its agent measured inside,
/// and all of them fit in the wall time around the run; so an
/// `AgentStarted` or `Released` sent at the wrong moment fails here. An
/// attempt starts when it is admitted (instantiation counts towards it),
/// before the agent's `run` reads its first clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_times_agree_with_clocks_outside_the_engine() {
    let spin = Duration::from_millis(60);
    let project = Project::new();
    project
        .component("first", &clocked("first.spun", spin))
        .component("second", &clocked("second.spun", spin));
    let workflow = project.workflow(
        "agents:
  first: {component: first.wasm, wasi: true}
  second: {component: second.wasm, wasi: true, needs: [first]}
",
    );
    let options = RunOptions::default();
    let mut rx = options.events.subscribe();
    let engine = ensemble_tests::engine();
    let started = Instant::now();
    let report = crate::bounded(engine.run(&workflow, options)).await;
    let wall = started.elapsed();
    assert!(report.succeeded(), "{report:#?}");
    let events = drain(&mut rx);
    let m = report.metrics(&workflow);
    let at = |agent_is: &dyn Fn(&EventKind) -> bool| {
        let found: Vec<Duration> = events.iter().filter(|e| agent_is(&e.kind)).map(|e| e.at).collect();
        assert_eq!(found.len(), 1, "one such event: {found:?}");
        found[0]
    };
    let mut total = Duration::ZERO;
    let mut previous_release = Duration::ZERO;
    for id in ["first", "second"] {
        let value = &report.context.get(&format!("{id}.spun")).expect("it reported").value;
        let inside = Duration::from_nanos(u64::from_le_bytes(value[2..10].try_into().expect("8 bytes")));
        assert!(inside >= spin, "{id} spun {inside:?} by its own clock");
        let run = m.agent(id).expect("reported").run_time;
        assert!(run >= inside, "{id}: run time {run:?} is shorter than the {inside:?} it spun");
        total += run;

        let admitted = at(&|k| matches!(k, EventKind::Admitted { agent, .. } if agent == id));
        let start = at(&|k| matches!(k, EventKind::AgentStarted { agent, .. } if agent == id));
        let released = at(&|k| matches!(k, EventKind::Released { agent, .. } if agent == id));
        assert!(previous_release <= admitted && admitted <= start, "{id}: admitted, then started");
        assert!(start + inside <= released, "{id}: started before it began to spin, released after");
        previous_release = released;
    }
    // One after the other, inside the wall time around the run.
    assert!(total <= m.total_time, "{total:?} of {:?}", m.total_time);
    assert!(m.total_time <= wall, "the report's {:?} of the {wall:?} around the run", m.total_time);
}

#[tokio::test]
async fn cache_hits_of_agents_and_renders_are_counted() {
    let project = Project::new();
    std::fs::create_dir(project.path().join("tpl")).expect("templates dir");
    std::fs::write(project.path().join("tpl/t.md"), "# {{ title }}\n").expect("template");
    let data = rmp_serde::to_vec_named(&serde_json::json!({"title": "same"})).expect("msgpack");
    project
        .component("r1", &renderer("r1.text", "t.md", &data))
        .component("r2", &renderer("r2.text", "t.md", &data));
    let workflow = project.workflow(
        "templates: tpl
resources: {max_concurrent: 1}
agents:
  r1: {component: r1.wasm}
  r2: {component: r2.wasm, needs: [r1]}
",
    );
    let spec = workflow.cache();
    let cache = || Some(Arc::new(AgentCache::open(&spec.dir, spec.max_size, spec.compress_above)));
    let engine = ensemble_tests::engine();
    let cold =
        crate::bounded(engine.run(&workflow, RunOptions { cache: cache(), ..RunOptions::default() })).await;
    let m = cold.metrics(&workflow);
    assert_eq!((m.cache.renders, m.cache.render_hits, m.cache.render_hit_ratio), (2, 1, Some(0.5)));
    assert_eq!((m.cache.agent_hits, m.cache.agent_lookups), (0, 2));

    let warm =
        crate::bounded(engine.run(&workflow, RunOptions { cache: cache(), ..RunOptions::default() })).await;
    let m = warm.metrics(&workflow);
    assert_eq!((m.cache.agent_hits, m.cache.agent_lookups, m.cache.agent_hit_ratio), (2, 2, Some(1.0)));
    assert_eq!(m.retries.attempts, 0, "nothing ran");
    assert!(m.agents.iter().all(|a| a.cached && a.run_time.is_zero()));
    assert!(m.timeline.marks.iter().any(|k| k.kind == MarkKind::CacheHit && k.lane == "r2"));
}

/// Check `text` against the trace-event format (the JSON object form):
/// every event's phase and the fields it needs.
fn check_trace(text: &str, total: Duration) -> Vec<Value> {
    let trace: Value = serde_json::from_str(text).expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents array").clone();
    let end = total.as_secs_f64() * 1e6 + 1.0;
    for e in &events {
        let ph = e["ph"].as_str().expect("ph");
        assert!(e["name"].is_string(), "name: {e}");
        assert!(e["pid"].is_u64() && e["tid"].is_u64(), "pid and tid: {e}");
        match ph {
            "M" => assert!(
                ["process_name", "thread_name", "thread_sort_index"]
                    .contains(&e["name"].as_str().unwrap_or("")),
                "{e}"
            ),
            "X" => {
                let (ts, dur) = (e["ts"].as_f64().expect("ts"), e["dur"].as_f64().expect("dur"));
                assert!(ts >= 0.0 && dur >= 0.0 && ts + dur <= end, "within the run: {e}");
            }
            "i" => {
                assert!(["g", "p", "t"].contains(&e["s"].as_str().unwrap_or("")), "{e}");
                assert!(e["ts"].as_f64().is_some_and(|ts| ts >= 0.0 && ts <= end), "{e}");
            }
            "C" => assert!(e["args"].as_object().expect("args").values().all(Value::is_number), "{e}"),
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    // Slices on one lane nest or follow each other: viewers draw them as a stack.
    let mut lanes: HashMap<(u64, u64), Vec<(f64, f64)>> = HashMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let (ts, dur) = (e["ts"].as_f64().unwrap_or(0.0), e["dur"].as_f64().unwrap_or(0.0));
        let lane = (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
        lanes.entry(lane).or_default().push((ts, ts + dur));
    }
    for (lane, mut slices) in lanes {
        slices.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut open: Vec<f64> = Vec::new();
        for (start, end) in slices {
            while open.last().is_some_and(|&e| e <= start + 1e-3) {
                open.pop();
            }
            if let Some(&outer) = open.last() {
                assert!(
                    end <= outer + 1e-3,
                    "slices overlap on lane {lane:?}: [{start}, {end}] within one ending {outer}"
                );
            }
            open.push(end);
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_fallback_shows_the_stopped_attempt_and_the_rerun() {
    // At the barrier's timeout `broken` has failed and `slow` still runs:
    // the barrier stops `slow` and re-runs both, one at a time. `after`
    // needs only `broken`, but as a dependent of the group it waits for
    // `slow` too, which puts `slow` on the measured critical path.
    let project = Project::new();
    project
        .component("broken", &fails_first(1, "broken.value"))
        // ~150 ms of spinning: still running at the 40 ms timeout on any
        // machine (40 M iterations took 40 ms here and raced the timer).
        .component("slow", &busy("slow.value", 150_000_000))
        .component("after", &writer("after.value"));
    let workflow = project.workflow(
        "agents:
  broken: {component: broken.wasm}
  slow: {component: slow.wasm}
  after: {component: after.wasm, needs: [broken]}
groups:
  g:
    agents: [broken, slow]
    barrier: {timeout: 40ms, on_timeout: [fallback_sequential]}
",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:#?}");
    let m = report.metrics(&workflow);
    assert_eq!(m.decisions.iter().map(|d| d.decision.name()).collect::<Vec<_>>(), ["fallback_sequential"]);
    let runs: Vec<_> =
        m.timeline.lane("slow").filter(|s| s.kind == SpanKind::Run).map(|s| s.outcome.as_deref()).collect();
    assert_eq!(runs, [Some("stopped"), Some("succeeded")]);
    for agent in ["broken", "slow", "after"] {
        let mut spans: Vec<_> = m.timeline.lane(agent).collect();
        spans.sort_by_key(|s| s.start);
        for pair in spans.windows(2) {
            assert!(pair[1].start >= pair[0].end, "{agent}: {:?} overlaps {:?}", pair[0], pair[1]);
        }
    }
    assert_eq!(m.critical_path.agents, ["slow", "after"], "{:?}", m.agents);
    assert_eq!(m.retries.retries, 2, "both members re-ran");
    check_trace(&report::trace::render(&m), m.total_time);
    let page = report::html::render(&m);
    assert!(page.contains("stopped by the barrier"), "the legend names the stopped attempt");
}

#[tokio::test]
async fn the_trace_is_trace_event_json_with_a_lane_per_agent() {
    let project = Project::new();
    let workflow = known_shape(&project);
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    let m = report.metrics(&workflow);
    let events = check_trace(&report::trace::render(&m), m.total_time);
    let lanes: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == 1)
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    for id in ["short", "long ★", "join ★", "checker", "checker validates join", "(load)"] {
        assert!(lanes.contains(&id), "a lane for {id}: {lanes:?}");
    }
    let runs = events.iter().filter(|e| e["ph"] == "X" && e["cat"] == "run").count();
    assert_eq!(runs as u32, m.retries.attempts, "one slice per attempt");
    let failed =
        events.iter().find(|e| e["cat"] == "run" && e["args"]["outcome"] == "failed").expect("failed slice");
    assert_eq!(failed["name"], "join #1");
    assert!(events.iter().any(|e| e["ph"] == "i" && e["name"] == "commit"));
    assert!(events.iter().any(|e| e["ph"] == "C" && e["name"] == "pool"));
}

/// Check `text` against the Prometheus text format: `# HELP` and `# TYPE`
/// before each family's samples, names and labels well formed, counters
/// ending in `_total`, values numbers. With `promtool` installed (CI), also
/// `promtool check metrics`, which lints the naming conventions.
fn check_exposition(test: &str, text: &str) {
    let mut declared: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(kind != "counter" || name.ends_with("_total"), "counters end in _total: {line}");
            declared.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with("# HELP ") {
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let name = series.split('{').next().unwrap_or("");
            assert!(declared.contains_key(name), "typed before its samples: {line}");
            assert!(
                name.starts_with("ensemble_") && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            );
            assert!(series.ends_with('}') && series.contains("workflow=\""), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("a number: {line}"));
        }
    }
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match promtool {
        Ok(mut child) => {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
            let out = child.wait_with_output().expect("promtool ends");
            let said =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(
                out.status.success() && said.trim().is_empty(),
                "promtool check metrics:\n{said}\n{text}"
            );
        }
        Err(_) => ensemble_tests::skip_or_require(
            &format!("observe::{test} (its promtool check)"),
            "promtool cannot run (the exposition was checked by the built-in checks only)",
            "install it (Debian package `prometheus`)",
            "ENSEMBLE_REQUIRE_PROMTOOL",
        ),
    }
}

#[tokio::test]
async fn the_prometheus_exposition_is_well_formed_and_follows_the_conventions() {
    let project = Project::new();
    let workflow = known_shape(&project);
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    let m = report.metrics(&workflow);
    let text = report::prometheus::render(&m);
    check_exposition("the_prometheus_exposition_is_well_formed_and_follows_the_conventions", &text);
    assert!(text.contains("ensemble_run_retries_total{workflow=\"workflow\"} 1"), "{text}");
    assert!(text.contains("ensemble_agent_attempts_total{workflow=\"workflow\",agent=\"join\"} 2"), "{text}");
    assert!(text.contains("ensemble_run_validation_failures_total{workflow=\"workflow\"} 1"), "{text}");
}

#[test]
fn the_cli_streams_events_and_writes_the_report_files() {
    let project = Project::new();
    let workflow = known_shape(&project);
    let dir = project.path();
    let (report, trace, metrics) =
        (dir.join("report.json"), dir.join("trace.json"), dir.join("metrics.prom"));
    let state = dir.join("state");
    let (code, out, err) = run_cli(&[
        "run",
        workflow.path().to_str().expect("utf-8 path"),
        "--run-id",
        "seen",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--events",
        "json",
        "--report",
        report.to_str().expect("utf-8"),
        "--trace",
        trace.to_str().expect("utf-8"),
        "--metrics",
        metrics.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    // stdout is JSON lines only: the components' loading (part of the run,
    // done before anything is written), then run_started to run_done.
    let events: Vec<Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let started = events.iter().position(|e| e["event"] == "run_started").expect("run_started");
    assert!(
        events[..started]
            .iter()
            .all(|e| e["event"] == "component_load_started" || e["event"] == "component_loaded"),
        "{out}"
    );
    assert_eq!(events.last().map(|e| e["event"].clone()), Some("run_done".into()));
    assert!(events.iter().all(|e| e["at"].is_f64()), "times in seconds");
    let retry = events.iter().find(|e| e["event"] == "agent_retrying").expect("join retried");
    assert_eq!((retry["agent"].as_str(), retry["attempt"].as_u64()), (Some("join"), Some(2)));
    // The summary went to stderr.
    assert!(err.contains("## workflow `workflow` (run seen): succeeded"), "{err}");

    let written: RunMetrics =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("report parses");
    assert_eq!(written.critical_path.agents, ["long", "join"]);
    check_trace(&std::fs::read_to_string(&trace).expect("trace written"), written.total_time);
    check_exposition(
        "the_cli_streams_events_and_writes_the_report_files",
        &std::fs::read_to_string(&metrics).expect("metrics written"),
    );

    // `report` reads the same report back from the journal.
    let (code, out, err) =
        run_cli(&["report", "seen", "--state-dir", state.to_str().expect("utf-8"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let journaled: RunMetrics = serde_json::from_str(&out).expect("report --json parses");
    assert_eq!(journaled.agents.len(), 4);
    assert_eq!(journaled.retries, written.retries);
    assert_eq!(journaled.critical_path.agents, written.critical_path.agents);
    let html = dir.join("report.html");
    let (code, out, err) = run_cli(&[
        "report",
        "seen",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("### Critical path (measured)"), "{out}");
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("id=\"timeline\""), "the HTML has the timeline");

    let (code, _, err) = run_cli(&["report", "nope", "--state-dir", state.to_str().expect("utf-8")]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_report_file_that_cannot_be_written_is_refused_before_the_run() {
    let project = Project::new();
    project.component("a", &busy("a.value", 10));
    let path = project.workflow_file("agents:\n  a: {component: a.wasm}\n");
    let missing = project.path().join("no/such/dir/trace.json");
    let (code, out, err) = run_cli(&[
        "run",
        path.to_str().expect("utf-8"),
        "--no-journal",
        "--trace",
        missing.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("--trace") && err.contains("no/such/dir") && err.contains("does not exist"),
        "{err}"
    );
    assert!(out.is_empty(), "nothing ran: {out}");
}

#[test]
fn on_a_terminal_the_live_bars_draw_and_the_run_finishes() {
    // `script` runs the real binary on a pseudo-terminal, so stderr is a
    // terminal and the indicatif bars draw (and must not deadlock).
    if std::process::Command::new("script").arg("--version").output().is_err() {
        ensemble_tests::skip_or_require(
            "observe::on_a_terminal_the_live_bars_draw_and_the_run_finishes",
            "`script` is not installed",
            "install it (Debian package bsdutils)",
            "ENSEMBLE_REQUIRE_SCRIPT",
        );
        return;
    }
    let project = Project::new();
    project.component("a", &busy("a.value", 2_000_000)).component("b", &busy("b.value", 2_000_000));
    let path =
        project.workflow_file("agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n");
    let command = format!("{} run {} --no-journal", env!("CARGO_BIN_EXE_ensemble-cli"), path.display());
    let output = std::process::Command::new("timeout")
        .args(["120", "script", "-qec", &command, "/dev/null"])
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{:?}: {shown}", output.status);
    assert!(shown.contains("## workflow `workflow`") && shown.contains("succeeded"), "{shown}");
    assert!(shown.contains("done     a"), "the lines above the bars: {shown}");
}
