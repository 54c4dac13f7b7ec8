//! Research example: reads every Markdown paper in the granted folder
//! `/papers` and writes `librarian.documents`, a list of
//! `{ file, title, topic, summary, words }` in file-name order.
//!
//! A paper is a `# Title` line, a `Topic: name` line and paragraphs; the
//! summary is its first paragraph after the topic.

use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, progress};
use ensemble_agent_sdk_wasi as host_io;
use serde::Serialize;

/// Where the workflow grants the papers.
const PAPERS: &str = "/papers";

#[derive(Debug, Serialize)]
struct Document {
    file: String,
    title: String,
    topic: String,
    summary: String,
    words: usize,
}

fn parse(file: &str, text: &str) -> Document {
    let mut title = file.to_owned();
    let mut topic = String::new();
    let mut summary = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix("# ") {
            title = t.to_owned();
        } else if let Some(t) = line.strip_prefix("Topic:") {
            topic = t.trim().to_lowercase();
        } else if line.is_empty() {
            if !summary.is_empty() {
                break;
            }
        } else if !topic.is_empty() {
            summary.push(line);
        }
    }
    Document {
        file: file.to_owned(),
        title,
        topic,
        summary: summary.join(" "),
        words: text.split_whitespace().count(),
    }
}

struct Librarian;

impl Agent for Librarian {
    fn run(_inv: &Invocation) -> Result<(), AgentError> {
        let names: Vec<String> = host_io::list(PAPERS)?
            .into_iter()
            .filter(|e| e.kind == "file" && e.name.ends_with(".md"))
            .map(|e| e.name)
            .collect();
        let mut documents = Vec::new();
        for (i, name) in names.iter().enumerate() {
            progress::report(i as f32 / names.len() as f32, &format!("reading {name}"));
            let text = host_io::read_to_string(&format!("{PAPERS}/{name}"))?;
            documents.push(parse(name, &text));
        }
        if documents.is_empty() {
            return Err(AgentError::invalid_input(format!("{PAPERS} has no .md papers")));
        }
        context::put("librarian.documents", &documents)?;
        Ok(())
    }
}

export_agent!(Librarian);
