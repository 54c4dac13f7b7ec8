//! The template service seen from agents: rendering, errors, the
//! concurrency limit.

use std::sync::Arc;

use ensemble::templates::{TemplateLimits, TemplateService};
use ensemble::{EventKind, RunOptions};
use ensemble_tests::{Project, renderer};

fn data(value: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encodes")
}

/// Renders are synchronous host calls, so they run at most one per worker
/// thread: four workers, so that a limit of two is what binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_max_renders_run_at_once() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("tpl")).expect("mkdir");
    std::fs::write(
        project.path().join("tpl/doc.md"),
        "# Doc {{ i }}\n{% for a in range(1000) %}{% for b in range(300) %}{% endfor %}{% endfor %}done\n",
    )
    .expect("template");
    let mut yaml = String::from("templates: tpl\nresources: {max_concurrent: 6}\nagents:\n");
    for i in 0..6 {
        project.component(
            &format!("r{i}"),
            &renderer(&format!("r{i}.doc"), "doc.md", &data(&serde_json::json!({"i": i}))),
        );
        yaml.push_str(&format!("  r{i}: {{component: r{i}.wasm}}\n"));
    }
    let workflow = project.workflow(&yaml);
    let limits = TemplateLimits { max_renders: 2, fuel: 100_000_000, ..TemplateLimits::default() };
    let service = Arc::new(TemplateService::new(&project.path().join("tpl"), limits));
    let options = RunOptions { templates: Some(service), ..RunOptions::default() };
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:#?}");
    for i in 0..6 {
        let doc = &report.context.get(&format!("r{i}.doc")).expect("rendered").value;
        assert_eq!(std::str::from_utf8(doc).expect("utf-8"), format!("# Doc {i}\ndone"));
    }
    let (mut now, mut most, mut renders) = (0, 0, 0);
    for event in crate::drain(&mut events) {
        match event.kind {
            EventKind::RenderStarted { .. } => {
                now += 1;
                most = most.max(now);
            }
            EventKind::Rendered { cached: false, .. } => {
                now -= 1;
                renders += 1;
            }
            _ => {}
        }
    }
    assert_eq!((renders, now), (6, 0), "every render started and ended");
    assert!(most <= 2, "{most} renders at once with a limit of 2");
    // Six agents asking at once: the limit, not the timing, is what bounds
    // them, so two did render at the same time.
    assert_eq!(most, 2, "the renders never overlapped");
}

#[tokio::test]
async fn a_render_error_names_the_template_and_line_and_fails_the_agent() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("tpl")).expect("mkdir");
    std::fs::write(project.path().join("tpl/bad.md"), "ok\n{{ nope.deeper }}\n").expect("template");
    project.component("r", &renderer("r.doc", "bad.md", &data(&serde_json::json!({}))));
    let workflow = project.workflow("templates: tpl\nagents:\n  r: {component: r.wasm}\n");
    let options = RunOptions::default(); // the service comes from the workflow's `templates`
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.error("r").is_some());
    let error = crate::drain(&mut events)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::Rendered { error, .. } => error,
            _ => None,
        })
        .expect("the render failed");
    assert!(error.contains("bad.md:2"), "{error}");
}

/// A render waiting for its turn waits asynchronously: its future is
/// pending, and the thread (an agent's tokio worker) is free meanwhile.
#[tokio::test]
async fn a_render_waiting_for_its_turn_does_not_block_the_thread() {
    use std::time::{Duration, Instant};

    let project = Project::new();
    std::fs::create_dir_all(project.path().join("tpl")).expect("mkdir");
    std::fs::write(
        project.path().join("tpl/slow.md"),
        "{% for a in range(10000) %}{% for b in range(300) %}{% endfor %}{% endfor %}{{ i }}\n",
    )
    .expect("template");
    let limits = TemplateLimits { max_renders: 1, fuel: 1_000_000_000, ..TemplateLimits::default() };
    let service = Arc::new(TemplateService::new(&project.path().join("tpl"), limits));
    let events = ensemble::EventSink::new();
    let mut heard = events.subscribe();
    // The one turn, taken by a render on another thread.
    let first = {
        let (service, events) = (service.clone(), events.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(service.render("a", "slow.md", &data(&serde_json::json!({"i": 0})), &events))
        })
    };
    loop {
        let event = crate::bounded(heard.recv()).await.expect("events");
        if matches!(event.kind, EventKind::RenderStarted { .. }) {
            break;
        }
    }
    let asked = Instant::now();
    let second = data(&serde_json::json!({"i": 1}));
    let waiting =
        tokio::time::timeout(Duration::from_millis(20), service.render("b", "slow.md", &second, &events))
            .await;
    let held = asked.elapsed();
    assert!(waiting.is_err(), "the second render did not wait for the first's turn");
    assert!(held < Duration::from_millis(300), "waiting for the turn held the thread for {held:?}");
    assert!(first.join().expect("first render").is_ok());
    let text = crate::bounded(service.render("b", "slow.md", &second, &events)).await.expect("renders");
    assert_eq!(text.text, "1");
}
