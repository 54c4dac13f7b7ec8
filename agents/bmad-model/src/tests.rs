//! The rules, one by one: each test pins a rule's numbers or order, so a
//! changed rule fails here before it changes the BMAD documents.

use super::*;

fn feature(name: &str, priority: Priority) -> Feature {
    Feature { name: name.into(), description: format!("{name} for the team"), priority, audience: Vec::new() }
}

fn audience(name: &str, devices: &[Device], share: Option<u32>) -> Audience {
    Audience { name: name.into(), needs: vec![format!("{name} need")], devices: devices.to_vec(), share }
}

/// Two audiences, three features (one must-have), defaults otherwise.
fn brief() -> Brief {
    Brief {
        name: "Task board".into(),
        summary: "Tasks for small teams".into(),
        problem: "Work gets lost".into(),
        goals: vec!["Halve lost tasks in 3 months".into(), "Happier teams".into()],
        audience: vec![
            audience("Team lead", &[Device::Desktop], Some(60)),
            audience("Member", &[Device::Mobile], Some(40)),
        ],
        features: vec![
            feature("Boards", Priority::Should),
            feature("Tasks", Priority::Must),
            feature("Reports", Priority::Could),
        ],
        constraints: Constraints::default(),
    }
}

// ---- complexity score ----

#[test]
fn the_complexity_score_weighs_each_input_as_documented() {
    let mut b = brief();
    // 3 features x 2 + 1 must-have; 1000 users is small (0), no extras.
    assert_eq!(metadata(&b).complexity_score, 7);
    b.constraints.integrations = vec!["Slack".into(), "GitHub".into()];
    assert_eq!(metadata(&b).complexity_score, 7 + 2 * 3, "3 per integration");
    b.constraints.compliance = vec!["GDPR".into()];
    assert_eq!(metadata(&b).complexity_score, 13 + 4, "4 per compliance rule");
    b.constraints.offline = true;
    assert_eq!(metadata(&b).complexity_score, 17 + 5, "5 for offline use");
    b.constraints.expected_users = 5_000;
    assert_eq!(metadata(&b).complexity_score, 22 + 3, "3 for a medium scale");
    b.constraints.expected_users = 100_000;
    assert_eq!(metadata(&b).complexity_score, 22 + 6, "6 for a large scale");
    b.features.push(feature("Billing", Priority::Must));
    assert_eq!(metadata(&b).complexity_score, 28 + 2 + 1, "2 per feature and 1 more for a must-have");
}

#[test]
fn the_complexity_bands_are_low_to_11_medium_to_23_then_high() {
    let band = |features: usize| {
        // Could-haves only: the score is exactly 2 per feature.
        let mut b = brief();
        b.features = (0..features).map(|i| feature(&format!("F{i}"), Priority::Could)).collect();
        let m = metadata(&b);
        (m.complexity_score, m.complexity)
    };
    assert_eq!(band(5), (10, "low".into()));
    // 11 is odd: one must-have on top of 5 features.
    let mut b = brief();
    b.features = (0..5).map(|i| feature(&format!("F{i}"), Priority::Could)).collect();
    b.features[0].priority = Priority::Must;
    assert_eq!((metadata(&b).complexity_score, metadata(&b).complexity), (11, "low".into()));
    assert_eq!(band(6), (12, "medium".into()));
    b.features = (0..11).map(|i| feature(&format!("F{i}"), Priority::Could)).collect();
    b.features[0].priority = Priority::Must;
    assert_eq!((metadata(&b).complexity_score, metadata(&b).complexity), (23, "medium".into()));
    assert_eq!(band(12), (24, "high".into()));
}

#[test]
fn the_estimate_is_two_weeks_plus_two_per_point_per_team_member_rounded_up() {
    let mut b = brief(); // score 7
    b.constraints.team_size = 4;
    assert_eq!(metadata(&b).estimated_weeks, 2 + 2 * 2, "7 / 4 rounds up to 2");
    b.constraints.team_size = 7;
    assert_eq!(metadata(&b).estimated_weeks, 2 + 2);
    b.constraints.team_size = 1;
    assert_eq!(metadata(&b).estimated_weeks, 2 + 7 * 2);
    b.constraints.team_size = 0; // check_brief refuses it; metadata must not divide by zero
    assert_eq!(metadata(&b).estimated_weeks, 2 + 7 * 2);
}

#[test]
fn an_estimate_over_the_deadline_is_a_schedule_risk() {
    let mut b = brief();
    b.constraints.team_size = 1; // 16 weeks
    b.constraints.deadline_weeks = 16;
    let risks = |b: &Brief| problem_analysis(b, &metadata(b)).risks;
    assert!(risks(&b).is_empty(), "{:?}", risks(&b));
    b.constraints.deadline_weeks = 15;
    assert_eq!(
        risks(&b),
        ["schedule: the estimate (16 weeks) exceeds the deadline (15 weeks); cut scope to the must-haves"]
    );
}

#[test]
fn the_scale_bands_split_at_5000_and_100000_users() {
    assert_eq!([scale(0), scale(4_999), scale(5_000)], ["small", "small", "medium"]);
    assert_eq!([scale(99_999), scale(100_000), scale(u32::MAX)], ["medium", "large", "large"]);
}

// ---- FR ordering ----

#[test]
fn requirements_are_ordered_must_should_could_keeping_the_brief_order_within_a_priority() {
    let mut b = brief();
    b.features = vec![
        feature("C1", Priority::Could),
        feature("S1", Priority::Should),
        feature("M1", Priority::Must),
        feature("S2", Priority::Should),
        feature("M2", Priority::Must),
        feature("C2", Priority::Could),
    ];
    let frs = functional_requirements(&b);
    let got: Vec<(&str, &str)> = frs.iter().map(|r| (r.id.as_str(), r.title.as_str())).collect();
    assert_eq!(
        got,
        [("FR-1", "M1"), ("FR-2", "M2"), ("FR-3", "S1"), ("FR-4", "S2"), ("FR-5", "C1"), ("FR-6", "C2")]
    );
}

#[test]
fn a_requirement_without_an_audience_serves_every_audience() {
    let mut b = brief();
    b.features[0].audience = vec!["Member".into()];
    let frs = functional_requirements(&b);
    let boards = frs.iter().find(|r| r.title == "Boards").expect("Boards");
    let tasks = frs.iter().find(|r| r.title == "Tasks").expect("Tasks");
    assert_eq!(boards.audience, ["Member"]);
    assert_eq!(tasks.audience, ["Team lead", "Member"]);
    // Stories follow: one per requirement and persona it serves, numbered in order.
    let users = target_users(&b);
    let stories = user_stories(&frs, &personas(&users, &b.problem));
    let got: Vec<(&str, &str, &str)> =
        stories.iter().map(|s| (s.id.as_str(), s.requirement.as_str(), s.persona.as_str())).collect();
    assert_eq!(
        got,
        [
            ("US-1", "FR-1", "Team lead"),
            ("US-2", "FR-1", "Member"),
            ("US-3", "FR-2", "Member"),
            ("US-4", "FR-3", "Team lead"),
            ("US-5", "FR-3", "Member"),
        ]
    );
    assert_eq!(stories[1].text, "As a member, I want the tasks so that I can member need.");
    assert_eq!(test_plan(&stories).len(), 5 * 3, "a test case per acceptance criterion");
}

// ---- layout from device shares ----

fn users(groups: &[(&[Device], Option<u32>)]) -> Vec<TargetUser> {
    let mut b = brief();
    b.audience =
        groups.iter().enumerate().map(|(i, (d, share))| audience(&format!("A{i}"), d, *share)).collect();
    target_users(&b)
}

#[test]
fn the_layout_is_mobile_first_when_phone_users_are_at_least_half() {
    use Device::{Desktop, Mobile, Tablet};
    assert_eq!(layout(&users(&[(&[Mobile], Some(50)), (&[Desktop], Some(50))])), "mobile_first");
    assert_eq!(layout(&users(&[(&[Mobile], Some(49)), (&[Desktop], Some(51))])), "desktop_primary");
    // A tablet is not a phone; a group on both counts as phone users.
    assert_eq!(layout(&users(&[(&[Tablet], Some(90)), (&[Mobile], Some(10))])), "desktop_primary");
    assert_eq!(layout(&users(&[(&[Desktop, Mobile], Some(30)), (&[Desktop], Some(20))])), "mobile_first");
    // Shares default to an equal split; devices default to desktop.
    assert_eq!(layout(&users(&[(&[Mobile], None), (&[], None)])), "mobile_first");
    assert_eq!(layout(&users(&[(&[Mobile], None), (&[], None), (&[], None)])), "desktop_primary");
    // No shares at all is not mobile-first.
    assert_eq!(layout(&users(&[(&[Mobile], Some(0))])), "desktop_primary");
    assert_eq!(layout(&[]), "desktop_primary");
}

#[test]
fn the_primary_user_is_the_first_with_the_largest_share() {
    let u = users(&[(&[], Some(30)), (&[Device::Mobile], Some(35)), (&[], Some(35))]);
    assert_eq!(u.iter().map(|u| u.primary).collect::<Vec<_>>(), [false, true, false]);
    assert_eq!(u[0].devices, [Device::Desktop], "devices default to desktop");
    let u = users(&[(&[], None), (&[], None), (&[], None)]);
    assert_eq!(u.iter().map(|u| u.share).collect::<Vec<_>>(), [33, 33, 33]);
}

#[test]
fn the_layout_decides_the_navigation_and_conflicts_with_the_stack() {
    let mobile = users(&[(&[Device::Mobile], Some(80)), (&[], Some(20))]);
    let ui = ui_specification(&mobile, &functional_requirements(&brief()), None);
    assert_eq!((ui.layout.as_str(), ui.navigation.as_str()), ("mobile_first", "bottom tab bar"));
    let desktop = users(&[(&[Device::Mobile], Some(20)), (&[], Some(80))]);
    let ui = ui_specification(&desktop, &[], Some("React"));
    assert_eq!(
        (ui.layout.as_str(), ui.navigation.as_str(), ui.framework.as_str()),
        ("desktop_primary", "left sidebar", "React")
    );

    assert!(layout_conflict("mobile_first", "desktop").is_some());
    assert!(layout_conflict("desktop_primary", "mobile").is_some());
    for agreeing in [("mobile_first", "mobile"), ("mobile_first", "both"), ("desktop_primary", "desktop")] {
        assert_eq!(layout_conflict(agreeing.0, agreeing.1), None, "{agreeing:?}");
    }
}

// ---- monolith vs microservices ----

fn tc(users: u32, team: u32) -> TechnicalConstraints {
    let mut b = brief();
    b.constraints.expected_users = users;
    b.constraints.team_size = team;
    technical_constraints(&b)
}

#[test]
fn microservices_only_for_a_large_scale_and_a_team_of_at_least_8() {
    let style = |users, team| system_architecture(&tc(users, team), &[]).style;
    assert_eq!(style(100_000, 8), "microservices");
    assert_eq!(style(100_000, 7), "modular monolith");
    assert_eq!(style(99_999, 50), "modular monolith");
    assert_eq!(style(1_000, 8), "modular monolith");
}

#[test]
fn modules_are_auth_then_one_per_requirement_then_the_extras() {
    let mut b = brief();
    b.constraints.integrations = vec!["Slack".into()];
    b.constraints.compliance = vec!["GDPR".into()];
    b.constraints.offline = true;
    let frs = functional_requirements(&b);
    let arch = system_architecture(&technical_constraints(&b), &frs);
    let names: Vec<&str> = arch.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["auth", "tasks", "boards", "reports", "integrations", "sync", "audit"]);
    let sync = &arch.modules[5];
    assert_eq!(sync.depends_on, ["tasks", "boards", "reports", "integrations"]);
    assert_eq!(arch.modules[1].requirement.as_deref(), Some("FR-1"));

    // Here the architecture's order already has every module after its
    // dependencies, so the plan keeps it.
    let plan = implementation_plan(&arch, None, 14);
    let order: Vec<&str> = plan.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(order, ["auth", "tasks", "boards", "reports", "integrations", "sync", "audit"]);
    let weeks: Vec<u32> = plan.milestones.iter().map(|m| m.week).collect();
    assert_eq!(weeks, [2, 4, 6, 8, 10, 12, 14], "milestones spread evenly up to the deadline");
}

#[test]
fn the_plan_puts_a_module_after_the_modules_it_depends_on() {
    let module = |name: &str, deps: &[&str]| Module {
        name: name.into(),
        responsibility: String::new(),
        depends_on: deps.iter().map(|d| (*d).into()).collect(),
        requirement: None,
    };
    let arch = SystemArchitecture {
        style: "modular monolith".into(),
        // Listed backwards, with a dependency on a module that does not exist.
        modules: vec![module("c", &["b"]), module("b", &["a", "elsewhere"]), module("a", &[])],
        data_store: String::new(),
        deployment: String::new(),
    };
    let plan = implementation_plan(&arch, None, 3);
    let order: Vec<(u32, &str)> = plan.modules.iter().map(|m| (m.order, m.name.as_str())).collect();
    assert_eq!(order, [(1, "a"), (2, "b"), (3, "c")]);
}

#[test]
fn the_stack_follows_the_platform_and_the_scale() {
    let mut t = tc(1_000, 4);
    let s = technology_stack(&t);
    assert_eq!(
        (s.primary_client.as_str(), s.hosting.as_str()),
        ("desktop", "containers on a managed platform")
    );
    t.platform = Platform::Mobile;
    assert_eq!(technology_stack(&t).primary_client, "mobile");
    t.platform = Platform::Both;
    assert_eq!(technology_stack(&t).primary_client, "both");
    assert_eq!(technology_stack(&tc(100_000, 4)).hosting, "Kubernetes");
}

// ---- QA checks ----

struct Outputs {
    frs: Vec<Requirement>,
    stories: Vec<Story>,
    endpoints: Vec<Endpoint>,
    plan: ImplementationPlan,
    arch: SystemArchitecture,
}

fn outputs() -> Outputs {
    let b = brief();
    let frs = functional_requirements(&b);
    let tc = technical_constraints(&b);
    let stories = user_stories(&frs, &personas(&target_users(&b), &b.problem));
    let arch = system_architecture(&tc, &frs);
    let plan = implementation_plan(&arch, None, b.constraints.deadline_weeks);
    Outputs { endpoints: api_specifications(&frs), frs, stories, plan, arch }
}

fn checks(o: &Outputs, conflict: Option<String>, partial: &[String]) -> Vec<(String, bool, String)> {
    validation_checks(&o.frs, &o.stories, &o.endpoints, &o.plan, &o.arch, conflict, partial)
        .into_iter()
        .map(|c| (c.name, c.passed, c.detail))
        .collect()
}

/// The checks that failed, with their details.
fn failed(o: &Outputs, conflict: Option<String>, partial: &[String]) -> Vec<(String, String)> {
    checks(o, conflict, partial).into_iter().filter(|c| !c.1).map(|c| (c.0, c.2)).collect()
}

#[test]
fn consistent_outputs_pass_every_qa_check() {
    let o = outputs();
    let all = checks(&o, None, &[]);
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|c| c.1), "{all:#?}");
    assert_eq!(all[0].2, "3 requirements, 6 stories");
    assert_eq!(all[2].2, "6 endpoints");
    assert_eq!(all[3].2, "4 modules in build order");
}

#[test]
fn each_qa_check_fails_naming_what_is_missing() {
    let mut o = outputs();
    o.stories.retain(|s| s.requirement != "FR-2");
    assert_eq!(
        failed(&o, None, &[]),
        [("every requirement has a user story".into(), "requirements without stories: FR-2".into())]
    );

    let mut o = outputs();
    o.stories[3].acceptance_criteria.clear();
    assert_eq!(
        failed(&o, None, &[]),
        [("every story has acceptance criteria".into(), "stories without criteria: US-4".into())]
    );

    let mut o = outputs();
    o.endpoints.retain(|e| e.requirement != "FR-1" && e.requirement != "FR-3");
    assert_eq!(
        failed(&o, None, &[]),
        [("every requirement has an API".into(), "requirements without endpoints: FR-1, FR-3".into())]
    );

    let mut o = outputs();
    o.plan.modules.retain(|m| m.name != "boards");
    assert_eq!(
        failed(&o, None, &[]),
        [("every module is planned".into(), "modules missing from the plan: boards".into())]
    );

    let o = outputs();
    let conflict = layout_conflict("mobile_first", "desktop");
    assert_eq!(
        failed(&o, conflict.clone(), &[]),
        [("UI and architecture agree on the primary client".into(), conflict.expect("a conflict"))]
    );
    assert_eq!(
        failed(&o, None, &["ux_expert".into(), "architect".into()]),
        [("every design output was produced".into(), "stand-in defaults for: ux_expert, architect".into())]
    );
}

// ---- the brief and helpers ----

#[test]
fn an_unusable_brief_lists_every_problem() {
    assert_eq!(check_brief(&brief()), Ok(()));
    let mut b = brief();
    b.name = "  ".into();
    b.features.clear();
    b.audience.clear();
    b.constraints.team_size = 0;
    assert_eq!(
        check_brief(&b),
        Err("the brief is unusable: `name` is empty; `features` lists nothing to build; \
             `audience` names no users; `constraints.team_size` is 0"
            .into())
    );
}

#[test]
fn slugs_and_pascal_case_names() {
    assert_eq!(slug("  Task board: v2!! "), "task-board-v2");
    assert_eq!(pascal("task board"), "TaskBoard");
    assert_eq!(slug("ÉtÉ"), "t", "non-ASCII letters are dropped");
}
