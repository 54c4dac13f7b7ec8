//! BMAD developer: the implementation plan — modules in build order, the
//! files of each, milestones; renders it.

use bmad_model::{
    ImplementationPlan, SystemArchitecture, TechnicalConstraints, UiSpecification, implementation_plan,
};
use ensemble_agent_sdk::{
    Agent, AgentError, Invocation, context, export_agent, msgpack, progress, templates,
};
use serde::Serialize;

struct Developer;

impl Agent for Developer {
    fn run(_: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading the architecture");
        let arch: SystemArchitecture = context::require("architect.system_architecture")?;
        let tc: TechnicalConstraints = context::require("analyst.technical_constraints")?;
        // A stand-in default (the UX expert did not finish) does not decode: plan without screens.
        let ui = context::get_raw("ux_expert.ui_specifications")?
            .and_then(|b| msgpack::decode::<UiSpecification>(&b, "ux_expert.ui_specifications").ok());
        let plan = implementation_plan(&arch, ui.as_ref(), tc.deadline_weeks);
        progress::report(0.7, "writing the plan");
        context::put("developer.implementation_plan", &plan)?;

        #[derive(Serialize)]
        struct Doc<'a> {
            plan: &'a ImplementationPlan,
            arch: &'a SystemArchitecture,
            has_ui: bool,
        }
        let doc = Doc { plan: &plan, arch: &arch, has_ui: ui.is_some() };
        context::put(
            "developer.documents.implementation_plan",
            &templates::render("implementation-plan.md", &doc)?,
        )?;
        progress::report(1.0, "done");
        Ok(())
    }
}

export_agent!(Developer);
