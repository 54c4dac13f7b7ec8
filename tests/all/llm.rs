//! Model calls through the host (`ensemble::llm`), against the scripted
//! Chat Completions server on loopback (`ensemble_tests::openai_server`):
//! what reaches the server, retries, timeouts, budgets, the run's limits and
//! structured answers. Counts are taken at the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ensemble::llm::openai::OpenAi;
use ensemble::llm::{Ask, Budget, CallError, Client, Limits, Message, Model, Retry, Role};
use ensemble_tests::openai_server::{Reply, Server};

const KEY: &str = "sk-test-4c1d9e-never-in-artefacts";

fn quick() -> Retry {
    Retry {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    }
}

fn client(server: &Server, limits: Limits, retry: Retry) -> Client {
    let provider = Arc::new(OpenAi::new(&server.base_url(), Some(KEY.into())).expect("a URL"));
    let models = HashMap::from([("writer".to_owned(), Model { provider, name: "test-model-1".into() })]);
    Client::new(models, limits, retry)
}

fn ask(text: &str) -> Ask {
    Ask {
        messages: vec![Message::new(Role::System, "You are terse."), Message::new(Role::User, text)],
        model: "writer".into(),
        temperature: Some(0.0),
        ..Ask::default()
    }
}

fn granted() -> Vec<String> {
    vec!["writer".to_owned()]
}

#[tokio::test]
async fn a_call_reaches_the_server_as_the_protocol_says_and_is_charged() {
    let server = Server::start(|_, _| Reply::text("Hello!", 21, 3)).await;
    let client = client(&server, Limits::default(), quick());
    let budget = Budget::new(10_000);
    let (answer, record) = crate::bounded(client.call(&ask("Say hello"), &granted(), &budget, 0)).await;
    let answer = answer.expect("answered");
    assert_eq!(answer.text, "Hello!");
    assert_eq!(answer.model, "test-model-1");
    assert_eq!((answer.usage.input, answer.usage.output), (21, 3));
    assert_eq!(budget.used(), 24);
    assert_eq!((record.attempts, record.usage.total()), (1, 24));
    let received = server.received();
    assert_eq!(received.len(), 1);
    let body = &received[0].body;
    assert_eq!(body["model"], "test-model-1", "the alias is resolved to the provider's name");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "Say hello");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(received[0].authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(received[0].target, "/v1/chat/completions", "origin form, as every server routes it");
}

#[tokio::test]
async fn an_alias_not_granted_or_a_budget_too_small_makes_no_call() {
    let server = Server::start(|_, _| Reply::text("never", 1, 1)).await;
    let client = client(&server, Limits::default(), quick());
    let budget = Budget::new(10_000);
    let (result, _) = client.call(&Ask { model: "other".into(), ..ask("hi") }, &granted(), &budget, 0).await;
    assert!(matches!(result, Err(CallError::UnknownModel { .. })), "{result:?}");
    let (result, _) = client.call(&ask("hi"), &[], &budget, 0).await;
    assert_eq!(result, Err(CallError::NotGranted));
    let tiny = Budget::new(5);
    let (result, record) = client.call(&ask(&"long prompt ".repeat(20)), &granted(), &tiny, 0).await;
    assert!(matches!(result, Err(CallError::BudgetExceeded { budget: 5, used: 0, .. })), "{result:?}");
    assert_eq!(record.attempts, 0);
    assert_eq!(server.calls(), 0, "nothing reached the server");
}

#[tokio::test]
async fn an_answer_cut_by_the_budget_is_an_error_not_a_short_answer() {
    let server = Server::start(|_, body| Reply::Answer {
        text: "a partial".into(),
        finish: "length",
        prompt_tokens: 20,
        completion_tokens: body["max_tokens"].as_u64().unwrap_or(0),
    })
    .await;
    let client = client(&server, Limits::default(), quick());
    let budget = Budget::new(200);
    let (result, _) =
        client.call(&Ask { max_tokens: Some(1000), ..ask("write a lot") }, &granted(), &budget, 0).await;
    assert!(matches!(result, Err(CallError::BudgetExceeded { budget: 200, .. })), "{result:?}");
    let sent = server.received()[0].body["max_tokens"].as_u64().expect("a cap");
    assert!(sent < 200, "the cap sent stays within the budget: {sent}");
    assert_eq!(budget.used(), 20 + sent, "charged what the server says was used");
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_what_retry_after_says() {
    let server = Server::start(|n, _| match n {
        0 => Reply::Error { status: 429, message: "slow down".into(), retry_after: Some("1".into()) },
        _ => Reply::text("ok", 5, 1),
    })
    .await;
    let client = client(&server, Limits::default(), quick());
    let began = std::time::Instant::now();
    let (result, record) = crate::bounded(client.call(&ask("hi"), &granted(), &Budget::new(1000), 0)).await;
    assert_eq!(result.expect("answered on the second try").text, "ok");
    assert_eq!((record.attempts, server.calls()), (2, 2));
    assert!(began.elapsed() >= Duration::from_millis(950), "waited out Retry-After: {:?}", began.elapsed());
}

#[tokio::test]
async fn server_errors_are_retried_until_the_tries_run_out() {
    let server = Server::start(|_, _| Reply::status(503, "overloaded")).await;
    let client = client(&server, Limits::default(), quick());
    let (result, _) = crate::bounded(client.call(&ask("hi"), &granted(), &Budget::new(1000), 0)).await;
    match result {
        Err(CallError::Provider { status: 503, message, attempts: 3 }) => assert_eq!(message, "overloaded"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.calls(), 3);
    // A client error is not worth a second try.
    let bad = Server::start(|_, _| Reply::status(400, "unknown parameter")).await;
    let (result, _) = client_for(&bad).call(&ask("hi"), &granted(), &Budget::new(1000), 0).await;
    assert!(matches!(result, Err(CallError::Provider { status: 400, attempts: 1, .. })), "{result:?}");
    assert_eq!(bad.calls(), 1);
}

fn client_for(server: &Server) -> Client {
    client(server, Limits::default(), quick())
}

#[tokio::test]
async fn a_stall_past_the_timeout_is_a_timeout() {
    let server =
        Server::start(|_, _| Reply::Stall(Duration::from_secs(30), Box::new(Reply::text("late", 1, 1))))
            .await;
    let retry = Retry { attempts: 2, timeout: Duration::from_millis(300), ..quick() };
    let client = client(&server, Limits::default(), retry);
    let began = std::time::Instant::now();
    let (result, _) = crate::bounded(client.call(&ask("hi"), &granted(), &Budget::new(1000), 0)).await;
    assert!(matches!(result, Err(CallError::Timeout { attempts: 2, .. })), "{result:?}");
    assert!(began.elapsed() < Duration::from_secs(10), "{:?}", began.elapsed());
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn malformed_answers_and_answers_outside_the_schema_are_refused() {
    let server = Server::start(|n, _| match n {
        0 => Reply::Raw("{\"choices\": [".into()),
        1 => Reply::text("{\"title\": 7}", 10, 4),
        _ => Reply::text("```json\n{\"title\": \"Login\"}\n```", 10, 6),
    })
    .await;
    let client = client_for(&server);
    let budget = Budget::new(10_000);
    let (result, _) = client.call(&ask("hi"), &granted(), &budget, 0).await;
    assert!(
        matches!(&result, Err(CallError::InvalidOutput(m)) if m.contains("not a chat completion")),
        "{result:?}"
    );
    let schema = serde_json::json!({"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}});
    let structured = Ask { schema: Some(schema.clone()), ..ask("a story title") };
    let (result, _) = client.call(&structured, &granted(), &budget, 0).await;
    assert!(matches!(&result, Err(CallError::InvalidOutput(m)) if m.contains("/title")), "{result:?}");
    let (result, _) = client.call(&structured, &granted(), &budget, 0).await;
    assert_eq!(result.expect("valid").text, "{\"title\": \"Login\"}", "the fence is taken off");
    let sent = &server.received()[1].body["response_format"];
    assert_eq!(sent["type"], "json_schema");
    assert_eq!(sent["json_schema"]["schema"], schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_calls_in_flight_than_the_limit() {
    let server =
        Server::start(|_, _| Reply::Stall(Duration::from_millis(100), Box::new(Reply::text("ok", 2, 2))))
            .await;
    let limits = Limits { concurrent: 2, ..Limits::default() };
    let client = client(&server, limits, quick());
    let budget = Arc::new(Budget::new(1_000_000));
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let (client, budget) = (client.clone(), budget.clone());
            tokio::spawn(
                async move { client.call(&ask(&format!("call {i}")), &granted(), &budget, 0).await.0 },
            )
        })
        .collect();
    for call in calls {
        call.await.expect("joins").expect("answered");
    }
    assert_eq!(server.calls(), 8);
    assert_eq!(server.peak(), 2, "at most two at the server at once, and two were");
}
