//! Research example: combines `librarian.documents` and `scout.works` into a
//! Markdown brief (`synthesist.brief`), rendered by the host from the
//! workflow's `brief.md` template.

use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, templates};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
struct Document {
    file: String,
    title: String,
    topic: String,
    summary: String,
    words: u64,
}

#[derive(Debug, Deserialize, Serialize)]
struct Work {
    topic: String,
    title: String,
    year: u32,
    citations: u32,
}

#[derive(Debug, Serialize)]
struct Data {
    documents: Vec<Document>,
    works: Vec<Work>,
}

fn required<T: serde::de::DeserializeOwned>(key: &str) -> Result<T, AgentError> {
    context::get(key)?.ok_or_else(|| AgentError::invalid_input(format!("{key} is missing")))
}

struct Synthesist;

impl Agent for Synthesist {
    fn run(_inv: &Invocation) -> Result<(), AgentError> {
        let data = Data { documents: required("librarian.documents")?, works: required("scout.works")? };
        let brief = templates::render("brief.md", &data)?;
        context::put("synthesist.brief", &brief)?;
        Ok(())
    }
}

export_agent!(Synthesist);
