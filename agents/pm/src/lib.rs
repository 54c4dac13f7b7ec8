//! BMAD product manager: functional and non-functional requirements,
//! personas and user stories with acceptance criteria; renders the PRD.

use bmad_model::{
    ProblemAnalysis, ProjectMetadata, TargetUser, TechnicalConstraints, functional_requirements,
    non_functional_requirements, personas, user_stories,
};
use ensemble_agent_sdk::{Agent, AgentError, Invocation, context, export_agent, progress, templates};
use serde::Serialize;

struct Pm;

impl Agent for Pm {
    fn run(_: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading the analysis");
        let meta: ProjectMetadata = context::require("analyst.project_metadata")?;
        let analysis: ProblemAnalysis = context::require("analyst.problem_analysis")?;
        let users: Vec<TargetUser> = context::require("analyst.target_users")?;
        let constraints: TechnicalConstraints = context::require("analyst.technical_constraints")?;
        let brief: bmad_model::Brief = context::require("input.brief")?;

        let frs = functional_requirements(&brief);
        let nfrs = non_functional_requirements(&constraints);
        let personas = personas(&users, &analysis.statement);
        let stories = user_stories(&frs, &personas);
        progress::report(0.7, "writing the requirements");
        context::put("pm.functional_requirements", &frs)?;
        context::put("pm.non_functional_requirements", &nfrs)?;
        context::put("pm.user_personas", &personas)?;
        context::put("pm.user_stories", &stories)?;

        #[derive(Serialize)]
        struct Doc<'a> {
            meta: &'a ProjectMetadata,
            analysis: &'a ProblemAnalysis,
            frs: &'a [bmad_model::Requirement],
            nfrs: &'a [bmad_model::Nfr],
            personas: &'a [bmad_model::Persona],
            stories: &'a [bmad_model::Story],
        }
        let doc = Doc {
            meta: &meta,
            analysis: &analysis,
            frs: &frs,
            nfrs: &nfrs,
            personas: &personas,
            stories: &stories,
        };
        context::put("pm.documents.prd", &templates::render("prd.md", &doc)?)?;
        progress::report(1.0, "done");
        Ok(())
    }
}

export_agent!(Pm);
