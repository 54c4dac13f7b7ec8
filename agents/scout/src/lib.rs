//! Research example: for each topic of its config, asks the citations API
//! (`$API_URL/related?topic=T`, with `Authorization: Bearer $API_TOKEN`) for
//! related works, and writes `scout.works`: a list of
//! `{ topic, title, year, citations }`, most cited first.
//!
//! Config: `{ topics: [String] }`. Variables: `API_URL` and the secret
//! `API_TOKEN`, granted by the workflow.

use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, http, log, progress};
use ensemble_agent_sdk_wasi as host_io;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Config {
    topics: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    works: Vec<Work>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Work {
    #[serde(default)]
    topic: String,
    title: String,
    year: u32,
    citations: u32,
}

fn variable(name: &str) -> Result<String, AgentError> {
    host_io::var(name).ok_or_else(|| AgentError::invalid_input(format!("variable {name} is not granted")))
}

struct Scout;

impl Agent for Scout {
    fn run(inv: &Invocation) -> Result<(), AgentError> {
        let cfg: Config = inv.config()?;
        let (url, token) = (variable("API_URL")?, variable("API_TOKEN")?);
        let mut works = Vec::new();
        for (i, topic) in cfg.topics.iter().enumerate() {
            progress::report(i as f32 / cfg.topics.len() as f32, &format!("asking about {topic}"));
            let request = http::Request::get(&format!("{url}/related?topic={topic}"))
                .header("authorization", &format!("Bearer {token}"));
            let response = http::send(&request)?;
            if response.status != 200 {
                return Err(AgentError::failed(format!(
                    "the API answered {} for topic {topic}: {}",
                    response.status,
                    response.text().unwrap_or("(not text)")
                )));
            }
            let answer: Answer = response.json()?;
            log::info(&format!("{topic}: {} related works", answer.works.len()));
            works.extend(answer.works.into_iter().map(|w| Work { topic: topic.clone(), ..w }));
        }
        works.sort_by(|a, b| b.citations.cmp(&a.citations).then_with(|| a.title.cmp(&b.title)));
        context::put("scout.works", &works)?;
        Ok(())
    }
}

export_agent!(Scout);
