//! BMAD QA: a test plan from the stories' acceptance criteria and a
//! validation report over every earlier output; renders the QA report.
//! Validates the analyst's goals and the PM's coverage.

use bmad_model::{
    Endpoint, ImplementationPlan, ProblemAnalysis, Requirement, Story, SystemArchitecture, TechnologyStack,
    UiSpecification, layout_conflict, test_plan, validation_checks,
};
use ensemble_agent_sdk::{
    Agent, AgentError, Finding, Invocation, Validation, context, export_agent, msgpack, progress, templates,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

struct Qa;

/// `key` decoded, or `None` if absent or a stand-in default.
fn optional<T: DeserializeOwned>(key: &str) -> Result<Option<T>, AgentError> {
    Ok(context::get_raw(key)?.and_then(|b| msgpack::decode::<T>(&b, key).ok()))
}

impl Agent for Qa {
    fn run(_: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading every output");
        let frs: Vec<Requirement> = context::require("pm.functional_requirements")?;
        let stories: Vec<Story> = context::require("pm.user_stories")?;
        let plan: ImplementationPlan = context::require("developer.implementation_plan")?;
        let arch: SystemArchitecture = context::require("architect.system_architecture")?;
        let endpoints: Vec<Endpoint> = optional("architect.api_specifications")?.unwrap_or_default();
        let ui: Option<UiSpecification> = optional("ux_expert.ui_specifications")?;
        let stack: Option<TechnologyStack> = optional("architect.technology_stack")?;
        let mut partial = Vec::new();
        if ui.is_none() {
            partial.push("ux_expert.ui_specifications".to_owned());
        }
        if stack.is_none() {
            partial.push("architect.technology_stack".to_owned());
        }
        let conflict = match (&ui, &stack) {
            (Some(ui), Some(stack)) => layout_conflict(&ui.layout, &stack.primary_client),
            _ => None,
        };
        let cases = test_plan(&stories);
        let checks = validation_checks(&frs, &stories, &endpoints, &plan, &arch, conflict, &partial);
        progress::report(0.7, "writing the report");
        context::put("qa.test_plan", &cases)?;
        context::put("qa.validation_report", &checks)?;

        #[derive(Serialize)]
        struct Doc<'a> {
            cases: &'a [bmad_model::TestCase],
            checks: &'a [bmad_model::Check],
            passed: usize,
            total: usize,
        }
        let passed = checks.iter().filter(|c| c.passed).count();
        let doc = Doc { cases: &cases, checks: &checks, passed, total: checks.len() };
        context::put("qa.documents.report", &templates::render("qa-report.md", &doc)?)?;
        progress::report(1.0, "done");
        Ok(())
    }

    fn validate(_: &Invocation, subject: &str) -> Result<Validation, AgentError> {
        let mut v = Validation::pass();
        match subject {
            "analyst" => {
                let analysis: ProblemAnalysis = context::require("analyst.problem_analysis")?;
                if analysis.goals.is_empty() {
                    v.push(
                        Finding::warning("the brief states no goals").with_key("analyst.problem_analysis"),
                    );
                }
            }
            "pm" => {
                let frs: Vec<Requirement> = context::require("pm.functional_requirements")?;
                let stories: Vec<Story> = context::require("pm.user_stories")?;
                for fr in frs.iter().filter(|fr| !stories.iter().any(|s| s.requirement == fr.id)) {
                    v.push(
                        Finding::error(format!("{} has no user story", fr.id)).with_key("pm.user_stories"),
                    );
                }
            }
            _ => {}
        }
        Ok(v)
    }
}

export_agent!(Qa);
