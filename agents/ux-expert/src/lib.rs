//! BMAD UX expert: UI specification, user journeys and component specs;
//! renders the front-end spec. Uses `architect.technology_stack` when the
//! architect committed it before this agent started (a `context` need), and
//! works without it. Validates the architect's stack against its layout.

use bmad_model::{
    Persona, Requirement, Story, TargetUser, TechnologyStack, UiSpecification, component_specifications,
    journeys, layout_conflict, ui_specification,
};
use ensemble_agent_sdk::{
    Agent, AgentError, Finding, Invocation, Validation, context, export_agent, msgpack, progress, templates,
};
use serde::Serialize;

struct UxExpert;

/// The architect's stack, if committed and not a stand-in default.
fn stack() -> Result<Option<TechnologyStack>, AgentError> {
    Ok(context::get_raw("architect.technology_stack")?
        .and_then(|bytes| msgpack::decode::<TechnologyStack>(&bytes, "architect.technology_stack").ok()))
}

impl Agent for UxExpert {
    fn run(_: &Invocation) -> Result<(), AgentError> {
        progress::report(0.0, "reading stories and personas");
        let stories: Vec<Story> = context::require("pm.user_stories")?;
        let personas: Vec<Persona> = context::require("pm.user_personas")?;
        let frs: Vec<Requirement> = context::require("pm.functional_requirements")?;
        let users: Vec<TargetUser> = context::require("analyst.target_users")?;
        let stack = stack()?;

        let ui = ui_specification(&users, &frs, stack.as_ref().map(|s| s.frontend.as_str()));
        let journeys = journeys(&personas, &stories);
        let components = component_specifications(&ui);
        progress::report(0.7, "writing the specification");
        context::put("ux_expert.ui_specifications", &ui)?;
        context::put("ux_expert.user_journeys", &journeys)?;
        context::put("ux_expert.component_specifications", &components)?;

        #[derive(Serialize)]
        struct Doc<'a> {
            ui: &'a UiSpecification,
            journeys: &'a [bmad_model::Journey],
            components: &'a [bmad_model::ComponentSpec],
            stack_known: bool,
        }
        let doc = Doc { ui: &ui, journeys: &journeys, components: &components, stack_known: stack.is_some() };
        context::put("ux_expert.documents.front_end_spec", &templates::render("front-end-spec.md", &doc)?)?;
        progress::report(1.0, "done");
        Ok(())
    }

    fn validate(_: &Invocation, subject: &str) -> Result<Validation, AgentError> {
        let mut validation = Validation::pass();
        if subject != "architect" {
            return Ok(validation);
        }
        let ui: Option<UiSpecification> = context::get("ux_expert.ui_specifications").ok().flatten();
        match (ui, stack()?) {
            (Some(ui), Some(stack)) => {
                if let Some(conflict) = layout_conflict(&ui.layout, &stack.primary_client) {
                    validation.push(Finding::error(conflict).with_key("architect.technology_stack"));
                }
            }
            _ => validation
                .push(Finding::warning("the architecture's stack or the UI specification is missing")),
        }
        Ok(validation)
    }
}

export_agent!(UxExpert);
