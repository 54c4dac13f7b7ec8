//! Outbound HTTP by allow-list: the `fetcher` fixture (tests/fixtures/rust/
//! fetcher) makes the requests its config lists through the SDK's `http`
//! module, against small HTTP/1.1 servers on 127.0.0.1 that count what
//! reaches them. Every denial fails the agent with an error naming it and
//! the refused thing, commits nothing, leaves a sibling alone, and the next
//! run works.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ensemble::events::{Event, EventKind};
use ensemble::runtime::{AgentError, Imports};
use ensemble::{Engine, RunOptions};
use ensemble_tests::{Project, repo_root, writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a test server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests being answered now, and the most at once.
    pub active: AtomicUsize,
    pub peak: AtomicUsize,
}

/// An HTTP/1.1 server on 127.0.0.1 answering by path:
/// `/ok` 200 "hello"; `/echo` 200 with the request body; `/redirect` 302 to
/// `redirect_to`; `/big` 4096 bytes with a length; `/big-chunked` 4096
/// bytes chunked; `/slow` 200 "slow" after 400 ms; `/silent` never answers.
pub struct Server {
    pub port: u16,
    pub seen: Arc<Seen>,
}

impl Server {
    pub async fn start(redirect_to: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Seen::default());
        let (s, redirect_to) = (seen.clone(), redirect_to.to_owned());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (s, redirect_to) = (s.clone(), redirect_to.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(crate::BOUND, answer(stream, &s, &redirect_to)).await;
                });
            }
        });
        Self { port, seen }
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }
}

async fn answer(mut stream: TcpStream, seen: &Seen, redirect_to: &str) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    let now = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
    seen.peak.fetch_max(now, Ordering::SeqCst);
    let reply = |status: &str, extra: &str, body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let response = match path.as_str() {
        "/ok" => reply("200 OK", "", b"hello"),
        "/echo" => reply("200 OK", "", &body),
        "/redirect" => reply("302 Found", &format!("location: {redirect_to}\r\n"), b""),
        "/big" => reply("200 OK", "", &[b'x'; 4096]),
        "/big-chunked" => {
            let mut r =
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
            for _ in 0..4 {
                r.extend_from_slice(b"400\r\n");
                r.extend_from_slice(&[b'y'; 1024]);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            reply("200 OK", "", b"slow")
        }
        "/silent" => {
            tokio::time::sleep(crate::BOUND).await;
            Vec::new()
        }
        _ => reply("404 Not Found", "", b"no such path"),
    };
    seen.active.fetch_sub(1, Ordering::SeqCst);
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// A project with the fetcher and a sibling that writes `sibling.value`.
pub fn project() -> Project {
    let project = Project::new();
    let fetcher =
        std::fs::read(repo_root().join("tests/fixtures/dist/fetcher.wasm")).expect("fetcher.wasm is built");
    project.component("fetcher", &fetcher);
    project.component("sibling", &writer("sibling.value"));
    project
}

/// A workflow: agent `fetch` with `grant` (YAML flow map of the http grant)
/// and `config`, a sibling, and `resources` if given.
pub fn workflow(grant: &str, config: &str, resources: &str) -> String {
    format!(
        "{resources}agents:
  fetch:
    component: fetcher.wasm
    grants: {{ http: {grant} }}
    config: {config}
  sibling: {{ component: sibling.wasm }}
"
    )
}

pub fn engine() -> Engine {
    ensemble_tests::engine()
}

/// Run `yaml` in `project`; the report and every event.
pub async fn run(engine: &Engine, project: &Project, yaml: &str) -> (ensemble::RunReport, Vec<Event>) {
    let workflow = project.workflow(yaml);
    let options = RunOptions::default();
    let mut rx = options.events.subscribe();
    let report = crate::bounded(engine.run(&workflow, options)).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (report, events)
}

/// The fetcher's results, decoded from MessagePack.
pub fn results(report: &ensemble::RunReport) -> Vec<serde_json::Value> {
    let entry = report.context.get("fetch.results").expect("fetch.results committed");
    rmp_serde::from_slice(&entry.value).expect("results decode")
}

fn refusals(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HttpRefused { agent, origin, reason } => {
                assert_eq!(agent, "fetch");
                Some((origin.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn requests(events: &[Event]) -> Vec<&EventKind> {
    events.iter().map(|e| &e.kind).filter(|k| matches!(k, EventKind::HttpRequest { .. })).collect()
}

/// The fetcher failed naming itself and every one of `needles`; it
/// committed nothing; the sibling succeeded.
#[track_caller]
fn denied(report: &ensemble::RunReport, needles: &[&str]) -> String {
    let error =
        report.error("fetch").unwrap_or_else(|| panic!("fetch should fail: {:?}", report.agent("fetch")));
    let message = error.to_string();
    assert!(message.contains("agent `fetch`"), "names the agent: {message}");
    for needle in needles {
        assert!(message.contains(needle), "names `{needle}`: {message}");
    }
    assert!(report.context.range("fetch.").next().is_none(), "nothing of fetch committed");
    assert!(report.context.get("sibling.value").is_some(), "the sibling committed");
    assert!(report.error("sibling").is_none());
    message
}

/// The next run, with the same engine, fetches fine.
async fn next_run_works(engine: &Engine, project: &Project, server: &Server) {
    let port = server.port;
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"] }}"),
        &format!("{{ requests: [{{ url: \"http://127.0.0.1:{port}/ok\" }}] }}"),
        "",
    );
    let (report, _) = run(engine, project, &yaml).await;
    assert!(report.succeeded(), "{:?}", report.error("fetch"));
    assert_eq!(results(&report)[0]["body"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_works_and_is_reported_by_origin() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"] }}"),
        &format!(
            "{{ requests: [{{ url: \"http://127.0.0.1:{port}/ok?secret=1\" }},
                           {{ url: \"http://127.0.0.1:{port}/echo\", method: POST, body: \"ping\" }}] }}"
        ),
        "",
    );
    let (report, events) = run(&engine(), &project, &yaml).await;
    assert!(report.succeeded(), "{:?}", report.error("fetch"));
    let results = results(&report);
    assert_eq!((results[0]["status"].as_u64(), results[0]["body"].as_str()), (Some(200), Some("hello")));
    assert_eq!((results[1]["status"].as_u64(), results[1]["body"].as_str()), (Some(200), Some("ping")));
    let requests = requests(&events);
    assert_eq!(requests.len(), 2, "{requests:?}");
    for (kind, (method, sent, received)) in requests.iter().zip([("GET", 0, 5), ("POST", 4, 4)]) {
        let EventKind::HttpRequest { agent, method: m, origin, status, sent: s, received: r, error, .. } =
            kind
        else {
            unreachable!()
        };
        assert_eq!(agent, "fetch");
        assert_eq!(origin, &format!("http://127.0.0.1:{port}"), "the origin only: no path or query");
        assert_eq!((m.as_str(), *status, *s, *r, error), (method, Some(200), sent, received, &None));
    }
    assert!(refusals(&events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_on_the_list_is_refused_before_any_connection() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let engine = engine();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"] }}"),
        &format!("{{ requests: [{{ url: \"http://localhost:{port}/ok\" }}] }}"),
        "",
    );
    let (report, events) = run(&engine, &project, &yaml).await;
    denied(
        &report,
        &[
            &format!("`http://localhost:{port}` is not on the allow-list"),
            &format!("http://127.0.0.1:{port}"),
        ],
    );
    assert_eq!(server.connections(), 0, "nothing reached the server");
    assert_eq!(refusals(&events).len(), 1);
    assert_eq!(refusals(&events)[0].0, format!("http://localhost:{port}"));
    assert!(requests(&events).is_empty(), "no request was sent");
    next_run_works(&engine, &project, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_host_on_another_port_is_refused() {
    let allowed = Server::start("").await;
    let other = Server::start("").await;
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{}\"] }}", allowed.port),
        &format!("{{ requests: [{{ url: \"http://127.0.0.1:{}/ok\" }}] }}", other.port),
        "",
    );
    let (report, _) = run(&engine(), &project, &yaml).await;
    denied(&report, &[&format!("`http://127.0.0.1:{}` is not on the allow-list", other.port)]);
    assert_eq!(other.connections() + allowed.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_refused_unless_the_pattern_names_it() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let engine = engine();
    // `*` admits any host by name, never a loopback or private address.
    for url in [format!("http://localhost:{port}/ok"), format!("http://127.0.0.1:{port}/ok")] {
        let yaml = workflow(
            &format!("{{ allow: [\"http://*:{port}\"] }}"),
            &format!("{{ requests: [{{ url: \"{url}\" }}] }}"),
            "",
        );
        let (report, events) = run(&engine, &project, &yaml).await;
        denied(
            &report,
            &["resolves to 127.0.0.1, a loopback, private or local address", &format!("`http://*:{port}`")],
        );
        assert_eq!(refusals(&events).len(), 1, "{url}");
        assert_eq!(server.connections(), 0, "{url}: nothing reached the server");
    }
    // `localhost` by name does name a loopback address.
    let yaml = workflow(
        &format!("{{ allow: [\"http://localhost:{port}\"] }}"),
        &format!("{{ requests: [{{ url: \"http://localhost:{port}/ok\" }}] }}"),
        "",
    );
    let (report, _) = run(&engine, &project, &yaml).await;
    assert!(report.succeeded(), "{:?}", report.error("fetch"));
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let elsewhere = Server::start("").await;
    let server = Server::start(&format!("http://127.0.0.1:{}/ok", elsewhere.port)).await;
    let port = server.port;
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"] }}"),
        &format!("{{ requests: [{{ url: \"http://127.0.0.1:{port}/redirect\" }}] }}"),
        "",
    );
    let (report, _) = run(&engine(), &project, &yaml).await;
    assert!(report.succeeded(), "{:?}", report.error("fetch"));
    let results = results(&report);
    assert_eq!(results[0]["status"].as_u64(), Some(302), "the agent sees the redirect");
    assert_eq!(
        results[0]["location"].as_str(),
        Some(format!("http://127.0.0.1:{}/ok", elsewhere.port).as_str())
    );
    assert_eq!(elsewhere.connections(), 0, "the redirect's target was never contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_over_the_limit_is_an_error_not_a_truncated_body() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let engine = engine();
    for path in ["/big", "/big-chunked"] {
        let yaml = workflow(
            &format!("{{ allow: [\"http://127.0.0.1:{port}\"], max_response_body: 1KiB }}"),
            &format!("{{ requests: [{{ url: \"http://127.0.0.1:{port}{path}\" }}] }}"),
            "",
        );
        let (report, events) = run(&engine, &project, &yaml).await;
        let message = denied(&report, &[path, "max_response_body` of 1024", "1024 bytes"]);
        assert_eq!(refusals(&events).len(), 1, "{path}: {message}");
        let requests = requests(&events);
        assert!(
            matches!(requests[..], [EventKind::HttpRequest { status: Some(200), error: Some(_), .. }]),
            "{path}: {requests:?}"
        );
    }
    next_run_works(&engine, &project, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_limit_is_refused_before_any_connection() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let body = "z".repeat(1000);
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"], max_request_body: 100 }}"),
        &format!(
            "{{ requests: [{{ url: \"http://127.0.0.1:{port}/echo\", method: POST, body: \"{body}\" }}] }}"
        ),
        "",
    );
    let (report, _) = run(&engine(), &project, &yaml).await;
    denied(&report, &["its request body is 1000 bytes, more than its `max_request_body` of 100"]);
    assert_eq!(server.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"], timeout: 1s }}"),
        &format!("{{ requests: [{{ url: \"http://127.0.0.1:{port}/silent\" }}] }}"),
        "",
    );
    let started = Instant::now();
    let (report, events) = run(&engine(), &project, &yaml).await;
    let took = started.elapsed();
    denied(&report, &["no answer to the response within 1s, its `timeout`"]);
    assert!(took < Duration::from_secs(30), "bounded by the timeout: {took:?}");
    assert_eq!(server.connections(), 1);
    assert!(matches!(requests(&events)[..], [EventKind::HttpRequest { status: None, error: Some(_), .. }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_stop_at_max_requests() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"], max_requests: 50 }}"),
        &format!("{{ requests: [{{ url: \"http://127.0.0.1:{port}/ok\", times: 1000 }}] }}"),
        "",
    );
    let (report, events) = run(&engine(), &project, &yaml).await;
    denied(&report, &["already made 50 requests, its `max_requests`"]);
    assert_eq!(server.connections(), 50, "the 51st was never sent");
    assert_eq!(requests(&events).len(), 50);
    assert_eq!(refusals(&events).len(), 1, "the loop stopped at the first refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded_per_invocation() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"], max_concurrent: 2 }}"),
        &format!("{{ parallel: true, requests: [{{ url: \"http://127.0.0.1:{port}/slow\", times: 4 }}] }}"),
        "",
    );
    let (report, events) = run(&engine(), &project, &yaml).await;
    denied(&report, &["already has 2 requests in flight, its `max_concurrent`"]);
    assert_eq!(refusals(&events).len(), 2, "the third and fourth");
    assert!(server.seen.peak.load(Ordering::SeqCst) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded_per_run_and_wait_their_turn() {
    let server = Server::start("").await;
    let port = server.port;
    let project = project();
    let grant = format!("{{ allow: [\"http://127.0.0.1:{port}\"], max_concurrent: 4 }}");
    let config =
        format!("{{ parallel: true, requests: [{{ url: \"http://127.0.0.1:{port}/slow\", times: 3 }}] }}");
    let yaml = format!(
        "resources: {{ http_concurrent: 2 }}
agents:
  fetch: {{ component: fetcher.wasm, grants: {{ http: {grant} }}, config: {config} }}
  other: {{ component: fetcher.wasm, grants: {{ http: {grant} }}, config: {config} }}
"
    );
    let (report, events) = run(&engine(), &project, &yaml).await;
    assert!(report.succeeded(), "{:?} {:?}", report.error("fetch"), report.error("other"));
    assert_eq!(server.connections(), 6);
    assert_eq!(server.seen.peak.load(Ordering::SeqCst), 2, "never more than the run's 2 at once");
    assert!(refusals(&events).is_empty());
}

#[tokio::test]
async fn a_component_importing_wasi_http_without_the_grant_fails_to_load_naming_it() {
    let bytes = std::fs::read(repo_root().join("tests/fixtures/dist/fetcher.wasm")).expect("fetcher.wasm");
    let engine = engine();
    let path = std::path::Path::new("fetcher.wasm");
    let runtime = engine.runtime();
    // Loaded with the grant first: the same bytes without it are still refused.
    runtime
        .load_granted("granted", path, &bytes, Imports { wasi: true, http: true, llm: false })
        .expect("granted loads");
    for imports in [Imports { wasi: true, http: false, llm: false }, Imports::default()] {
        let error = runtime.load_granted("plain", path, &bytes, imports).expect_err("not granted");
        let message = error.to_string();
        assert!(matches!(error, AgentError::Link { .. }), "{message}");
        assert!(message.contains("agent `plain`") && message.contains("`wasi:http/"), "{message}");
        assert!(message.contains("`http` grant"), "says how to grant it: {message}");
    }
    // And in a workflow: the agent fails by name, its sibling runs.
    let project = project();
    let (report, _) = run(
        &engine,
        &project,
        "agents:\n  fetch: {component: fetcher.wasm, wasi: true}\n  sibling: {component: sibling.wasm}\n",
    )
    .await;
    denied(&report, &["wasi:http/"]);
}

/// One plain GET from the host with hyper (a new connection, like the
/// guest's), its body read whole.
async fn host_get(port: u16) -> usize {
    use http_body_util::BodyExt;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::get("/ok")
        .header("host", format!("127.0.0.1:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    response.into_body().collect().await.expect("body").to_bytes().len()
}

/// The cost of a granted GET from a guest against a plain hyper GET from
/// the host, to the same loopback server, 1000 of each, medians. Run with
/// `cargo test -p ensemble-tests --test all -- --ignored --nocapture http_get_cost`
/// (the dev profile builds wasmtime, hyper and the other dependencies with
/// opt-level 2). Each GET opens a new connection, guest and host alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn http_get_cost() {
    const N: u32 = 1000;
    let server = Server::start("").await;
    let port = server.port;
    let mut host = Vec::new();
    for _ in 0..N {
        let started = Instant::now();
        assert_eq!(host_get(port).await, 5);
        host.push(started.elapsed());
    }
    let project = project();
    let yaml = workflow(
        &format!("{{ allow: [\"http://127.0.0.1:{port}\"], max_requests: {N} }}"),
        &format!("{{ requests: [{{ url: \"http://127.0.0.1:{port}/ok\", times: {N} }}] }}"),
        "",
    );
    let (report, events) = run(&engine(), &project, &yaml).await;
    assert!(report.succeeded(), "{:?}", report.error("fetch"));
    let ends: Vec<Duration> =
        events.iter().filter(|e| matches!(e.kind, EventKind::HttpRequest { .. })).map(|e| e.at).collect();
    assert_eq!(ends.len(), N as usize);
    // From one request's end to the next's: the guest's whole cycle.
    let cycles: Vec<Duration> = ends.windows(2).map(|w| w[1] - w[0]).collect();
    let flights: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::HttpRequest { elapsed, .. } => Some(elapsed),
            _ => None,
        })
        .collect();
    let (_, host_median, _) = ensemble_tests::min_median_max(host);
    let (_, cycle_median, _) = ensemble_tests::min_median_max(cycles);
    let (_, flight_median, _) = ensemble_tests::min_median_max(flights);
    println!(
        "host hyper GET median {host_median:?}; guest GET cycle median {cycle_median:?} ({:.2}x); \
         host side of the guest's GET (connect to body end) median {flight_median:?} ({:.2}x)",
        cycle_median.as_secs_f64() / host_median.as_secs_f64(),
        flight_median.as_secs_f64() / host_median.as_secs_f64(),
    );
}
