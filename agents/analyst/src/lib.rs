//! BMAD analyst: turns the project brief (`input.brief`) into project
//! metadata, a problem analysis, target users and technical constraints,
//! and renders the project brief document.

use bmad_model::{Brief, check_brief, metadata, problem_analysis, target_users, technical_constraints};
use ensemble_agent_sdk::{
    Agent, AgentError, Finding, Invocation, Validation, context, export_agent, progress, templates,
};
use serde::Serialize;

struct Analyst;

#[derive(Serialize)]
struct Doc<'a> {
    brief: &'a Brief,
    meta: &'a bmad_model::ProjectMetadata,
    analysis: &'a bmad_model::ProblemAnalysis,
    users: &'a [bmad_model::TargetUser],
    constraints: &'a bmad_model::TechnicalConstraints,
}

impl Agent for Analyst {
    fn run(_: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading the brief");
        let brief: Brief = context::require("input.brief")?;
        check_brief(&brief).map_err(AgentError::invalid_input)?;
        let meta = metadata(&brief);
        let analysis = problem_analysis(&brief, &meta);
        let users = target_users(&brief);
        let constraints = technical_constraints(&brief);
        progress::report(0.6, "writing the analysis");
        context::put("analyst.project_metadata", &meta)?;
        context::put("analyst.problem_analysis", &analysis)?;
        context::put("analyst.target_users", &users)?;
        context::put("analyst.technical_constraints", &constraints)?;
        let doc =
            Doc { brief: &brief, meta: &meta, analysis: &analysis, users: &users, constraints: &constraints };
        context::put("analyst.documents.brief", &templates::render("brief.md", &doc)?)?;
        progress::report(1.0, "done");
        Ok(())
    }

    /// Nothing to validate but itself: warns about goals without a target.
    fn validate(_: &Invocation, _subject: &str) -> Result<Validation, AgentError> {
        let analysis: bmad_model::ProblemAnalysis = context::require("analyst.problem_analysis")?;
        Ok(Validation::from_findings(
            analysis
                .goals
                .iter()
                .filter(|g| g.metric.starts_with("no target"))
                .map(|g| Finding::warning(format!("goal without a measurable target: {}", g.goal)))
                .collect(),
        ))
    }
}

export_agent!(Analyst);
