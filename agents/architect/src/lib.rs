//! BMAD architect: system architecture, technology stack and API
//! specification; renders the architecture document. Validates the PM's
//! technical requirements and, in its group, the UX specification.

use bmad_model::{
    Nfr, ProjectMetadata, Requirement, SystemArchitecture, TechnicalConstraints, TechnologyStack,
    UiSpecification, api_specifications, layout_conflict, system_architecture, technology_stack,
};
use ensemble_agent_sdk::{
    Agent, AgentError, Finding, Invocation, Validation, context, export_agent, msgpack, progress, templates,
};
use serde::Serialize;

struct Architect;

impl Agent for Architect {
    fn run(_: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading requirements");
        let frs: Vec<Requirement> = context::require("pm.functional_requirements")?;
        let nfrs: Vec<Nfr> = context::require("pm.non_functional_requirements")?;
        let tc: TechnicalConstraints = context::require("analyst.technical_constraints")?;

        let arch = system_architecture(&tc, &frs);
        let stack = technology_stack(&tc);
        let api = api_specifications(&frs);
        progress::report(0.7, "writing the architecture");
        context::put("architect.system_architecture", &arch)?;
        context::put("architect.technology_stack", &stack)?;
        context::put("architect.api_specifications", &api)?;

        #[derive(Serialize)]
        struct Doc<'a> {
            arch: &'a SystemArchitecture,
            stack: &'a TechnologyStack,
            api: &'a [bmad_model::Endpoint],
            nfrs: &'a [Nfr],
            constraints: &'a TechnicalConstraints,
        }
        let doc = Doc { arch: &arch, stack: &stack, api: &api, nfrs: &nfrs, constraints: &tc };
        context::put("architect.documents.architecture", &templates::render("architecture.md", &doc)?)?;
        progress::report(1.0, "done");
        Ok(())
    }

    fn validate(_: &Invocation, subject: &str) -> Result<Validation, AgentError> {
        let mut v = Validation::pass();
        match subject {
            "pm" => {
                let nfrs: Vec<Nfr> = context::require("pm.non_functional_requirements")?;
                for needed in ["performance", "availability", "security"] {
                    if !nfrs.iter().any(|n| n.category == needed) {
                        v.push(
                            Finding::error(format!("no {needed} requirement"))
                                .with_key("pm.non_functional_requirements"),
                        );
                    }
                }
                let meta: ProjectMetadata = context::require("analyst.project_metadata")?;
                let tc: TechnicalConstraints = context::require("analyst.technical_constraints")?;
                if meta.estimated_weeks > tc.deadline_weeks {
                    v.push(
                        Finding::warning(format!(
                            "the requirements need about {} weeks; the deadline is {} weeks",
                            meta.estimated_weeks, tc.deadline_weeks
                        ))
                        .with_key("pm.functional_requirements"),
                    );
                }
            }
            "ux_expert" => {
                let stack: TechnologyStack = context::require("architect.technology_stack")?;
                let ui = context::get_raw("ux_expert.ui_specifications")?
                    .and_then(|b| msgpack::decode::<UiSpecification>(&b, "ux_expert.ui_specifications").ok());
                match ui {
                    Some(ui) => {
                        if let Some(conflict) = layout_conflict(&ui.layout, &stack.primary_client) {
                            v.push(Finding::error(conflict).with_key("ux_expert.ui_specifications"));
                        }
                    }
                    None => v.push(Finding::warning("the UI specification was not produced")),
                }
            }
            _ => {}
        }
        Ok(v)
    }
}

export_agent!(Architect);
