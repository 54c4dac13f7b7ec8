//! The BMAD workflow's model: the project brief, what each agent writes,
//! and the rules that derive one from the other.
//!
//! No language model is involved: every output is a deterministic function
//! of the brief (and of earlier agents' outputs), so the same brief gives
//! the same documents on every run. Collections are `Vec`s in a defined
//! order; nothing iterates a hash map.

use serde::{Deserialize, Serialize};

// ---- the brief (input.brief) ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Brief {
    pub name: String,
    pub summary: String,
    pub problem: String,
    #[serde(default)]
    pub goals: Vec<String>,
    #[serde(default)]
    pub audience: Vec<Audience>,
    #[serde(default)]
    pub features: Vec<Feature>,
    #[serde(default)]
    pub constraints: Constraints,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Audience {
    pub name: String,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Percent of the users.
    #[serde(default)]
    pub share: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub priority: Priority,
    /// Audience names it serves; all when empty.
    #[serde(default)]
    pub audience: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Must,
    #[default]
    Should,
    Could,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    #[default]
    Web,
    Mobile,
    Both,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Constraints {
    #[serde(default)]
    pub platform: Platform,
    #[serde(default = "default_users")]
    pub expected_users: u32,
    #[serde(default = "default_weeks")]
    pub deadline_weeks: u32,
    #[serde(default = "default_team")]
    pub team_size: u32,
    #[serde(default)]
    pub compliance: Vec<String>,
    #[serde(default)]
    pub integrations: Vec<String>,
    #[serde(default)]
    pub offline: bool,
}

fn default_users() -> u32 {
    1000
}
fn default_weeks() -> u32 {
    12
}
fn default_team() -> u32 {
    4
}

impl Default for Constraints {
    fn default() -> Self {
        Self {
            platform: Platform::Web,
            expected_users: default_users(),
            deadline_weeks: default_weeks(),
            team_size: default_team(),
            compliance: Vec::new(),
            integrations: Vec::new(),
            offline: false,
        }
    }
}

/// Problems with a brief that make it unusable.
pub fn check_brief(brief: &Brief) -> Result<(), String> {
    let mut problems = Vec::new();
    if brief.name.trim().is_empty() {
        problems.push("`name` is empty");
    }
    if brief.features.is_empty() {
        problems.push("`features` lists nothing to build");
    }
    if brief.audience.is_empty() {
        problems.push("`audience` names no users");
    }
    if brief.constraints.team_size == 0 {
        problems.push("`constraints.team_size` is 0");
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("the brief is unusable: {}", problems.join("; "))) }
}

// ---- helpers ----

/// `Task board` → `task-board`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// `task board` → `TaskBoard`.
pub fn pascal(text: &str) -> String {
    slug(text)
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn lower_first(text: &str) -> String {
    let mut c = text.chars();
    c.next().map(|f| f.to_lowercase().to_string() + c.as_str()).unwrap_or_default()
}

// ---- analyst ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectMetadata {
    pub name: String,
    pub slug: String,
    pub summary: String,
    pub complexity: String,
    pub complexity_score: u32,
    pub estimated_weeks: u32,
    pub feature_count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    pub goal: String,
    pub metric: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProblemAnalysis {
    pub statement: String,
    pub goals: Vec<Goal>,
    pub pains: Vec<String>,
    pub risks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetUser {
    pub name: String,
    pub needs: Vec<String>,
    pub devices: Vec<Device>,
    pub share: u32,
    pub primary: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TechnicalConstraints {
    pub platform: Platform,
    pub scale: String,
    pub expected_users: u32,
    pub deadline_weeks: u32,
    pub team_size: u32,
    pub compliance: Vec<String>,
    pub integrations: Vec<String>,
    pub offline: bool,
}

pub fn scale(users: u32) -> &'static str {
    match users {
        0..=4_999 => "small",
        5_000..=99_999 => "medium",
        _ => "large",
    }
}

pub fn metadata(brief: &Brief) -> ProjectMetadata {
    let c = &brief.constraints;
    let features = brief.features.len() as u32;
    let musts = brief.features.iter().filter(|f| f.priority == Priority::Must).count() as u32;
    let scale_points = match scale(c.expected_users) {
        "small" => 0,
        "medium" => 3,
        _ => 6,
    };
    let score = features * 2
        + musts
        + c.integrations.len() as u32 * 3
        + c.compliance.len() as u32 * 4
        + scale_points
        + if c.offline { 5 } else { 0 };
    let complexity = match score {
        0..=11 => "low",
        12..=23 => "medium",
        _ => "high",
    };
    // About one person-week per complexity point, spread over the team, plus a
    // fixed two weeks of set-up and hardening.
    let estimated_weeks = 2 + score.div_ceil(c.team_size.max(1)) * 2;
    ProjectMetadata {
        name: brief.name.clone(),
        slug: slug(&brief.name),
        summary: brief.summary.clone(),
        complexity: complexity.into(),
        complexity_score: score,
        estimated_weeks,
        feature_count: features,
    }
}

pub fn problem_analysis(brief: &Brief, meta: &ProjectMetadata) -> ProblemAnalysis {
    let goals = brief
        .goals
        .iter()
        .map(|g| Goal {
            goal: g.clone(),
            metric: if g.chars().any(|c| c.is_ascii_digit()) {
                "the target stated in the goal, measured before launch and monthly after".into()
            } else {
                "no target given: agree a baseline and a target before development starts".into()
            },
        })
        .collect();
    let mut pains: Vec<String> = Vec::new();
    for a in &brief.audience {
        for n in &a.needs {
            if !pains.contains(n) {
                pains.push(n.clone());
            }
        }
    }
    let c = &brief.constraints;
    let mut risks = Vec::new();
    if meta.estimated_weeks > c.deadline_weeks {
        risks.push(format!(
            "schedule: the estimate ({} weeks) exceeds the deadline ({} weeks); cut scope to the must-haves",
            meta.estimated_weeks, c.deadline_weeks
        ));
    }
    for rule in &c.compliance {
        risks.push(format!("compliance: {rule} needs a review before launch"));
    }
    for i in &c.integrations {
        risks.push(format!("integration: changes to the {i} API can break the product"));
    }
    if c.offline {
        risks.push("offline use: edits made offline can conflict when they sync".into());
    }
    ProblemAnalysis { statement: brief.problem.clone(), goals, pains, risks }
}

pub fn target_users(brief: &Brief) -> Vec<TargetUser> {
    let n = brief.audience.len().max(1) as u32;
    let shares: Vec<u32> = brief.audience.iter().map(|a| a.share.unwrap_or(100 / n)).collect();
    let top = shares.iter().copied().max().unwrap_or(0);
    let mut primary_taken = false;
    brief
        .audience
        .iter()
        .zip(shares)
        .map(|(a, share)| {
            let primary = share == top && !primary_taken;
            primary_taken |= primary;
            TargetUser {
                name: a.name.clone(),
                needs: a.needs.clone(),
                devices: if a.devices.is_empty() { vec![Device::Desktop] } else { a.devices.clone() },
                share,
                primary,
            }
        })
        .collect()
}

pub fn technical_constraints(brief: &Brief) -> TechnicalConstraints {
    let c = &brief.constraints;
    TechnicalConstraints {
        platform: c.platform,
        scale: scale(c.expected_users).into(),
        expected_users: c.expected_users,
        deadline_weeks: c.deadline_weeks,
        team_size: c.team_size,
        compliance: c.compliance.clone(),
        integrations: c.integrations.clone(),
        offline: c.offline,
    }
}

// ---- pm ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requirement {
    pub id: String,
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub audience: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nfr {
    pub id: String,
    pub category: String,
    pub requirement: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persona {
    pub name: String,
    pub role: String,
    pub goal: String,
    pub frustration: String,
    pub device: Device,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Story {
    pub id: String,
    pub requirement: String,
    pub persona: String,
    pub text: String,
    pub priority: Priority,
    pub acceptance_criteria: Vec<String>,
}

pub fn functional_requirements(brief: &Brief) -> Vec<Requirement> {
    let mut features: Vec<&Feature> = brief.features.iter().collect();
    features.sort_by_key(|f| f.priority); // stable: file order within a priority
    features
        .into_iter()
        .enumerate()
        .map(|(i, f)| Requirement {
            id: format!("FR-{}", i + 1),
            title: f.name.clone(),
            description: f.description.clone(),
            priority: f.priority,
            audience: if f.audience.is_empty() {
                brief.audience.iter().map(|a| a.name.clone()).collect()
            } else {
                f.audience.clone()
            },
        })
        .collect()
}

pub fn non_functional_requirements(tc: &TechnicalConstraints) -> Vec<Nfr> {
    let (latency, availability) = match tc.scale.as_str() {
        "small" => (500, "99.5 %"),
        "medium" => (300, "99.9 %"),
        _ => (200, "99.95 %"),
    };
    let mut list = vec![
        (
            "performance",
            format!("95 % of requests answer within {latency} ms with {} users", tc.expected_users),
        ),
        ("availability", format!("{availability} monthly uptime")),
        ("security", "every request is authenticated; roles decide what each user may see and change".into()),
        ("accessibility", "screens meet WCAG 2.1 AA".into()),
    ];
    for rule in &tc.compliance {
        list.push((
            "compliance",
            format!("personal data is handled as {rule} requires, with an audit trail"),
        ));
    }
    if tc.offline {
        list.push(("offline", "core tasks work offline and sync within 60 s of reconnecting".into()));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, (category, requirement))| Nfr {
            id: format!("NFR-{}", i + 1),
            category: category.into(),
            requirement,
        })
        .collect()
}

pub fn personas(users: &[TargetUser], problem: &str) -> Vec<Persona> {
    users
        .iter()
        .map(|u| Persona {
            name: format!("{} persona", u.name),
            role: u.name.clone(),
            goal: u.needs.first().cloned().unwrap_or_else(|| "get the job done quickly".into()),
            frustration: problem.to_owned(),
            device: u.devices.first().copied().unwrap_or(Device::Desktop),
        })
        .collect()
}

pub fn user_stories(frs: &[Requirement], personas: &[Persona]) -> Vec<Story> {
    let mut stories = Vec::new();
    for fr in frs {
        for p in personas.iter().filter(|p| fr.audience.contains(&p.role)) {
            let n = stories.len() + 1;
            stories.push(Story {
                id: format!("US-{n}"),
                requirement: fr.id.clone(),
                persona: p.role.clone(),
                text: format!(
                    "As a {}, I want the {} so that I can {}.",
                    lower_first(&p.role),
                    lower_first(&fr.title),
                    lower_first(&p.goal)
                ),
                priority: fr.priority,
                acceptance_criteria: vec![
                    format!("Given I am signed in as a {}, when I open {}, then I see it within the performance target", lower_first(&p.role), lower_first(&fr.title)),
                    format!("Given valid input, when I use {}, then the change is saved and confirmed", lower_first(&fr.title)),
                    format!("Given invalid input, when I use {}, then nothing is saved and I am told why", lower_first(&fr.title)),
                ],
            });
        }
    }
    stories
}

// ---- ux_expert ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Screen {
    pub name: String,
    pub requirement: String,
    pub components: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UiSpecification {
    /// `mobile_first` or `desktop_primary`.
    pub layout: String,
    pub breakpoints: Vec<u32>,
    pub navigation: String,
    /// The front-end framework, when the architect's stack was known.
    pub framework: String,
    pub screens: Vec<Screen>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journey {
    pub persona: String,
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentSpec {
    pub name: String,
    pub purpose: String,
    pub states: Vec<String>,
    pub used_on: Vec<String>,
}

/// Mobile-first when users who use phones are at least half of the users.
pub fn layout(users: &[TargetUser]) -> &'static str {
    let total: u32 = users.iter().map(|u| u.share).sum();
    let mobile: u32 = users.iter().filter(|u| u.devices.contains(&Device::Mobile)).map(|u| u.share).sum();
    if total > 0 && mobile * 2 >= total { "mobile_first" } else { "desktop_primary" }
}

pub fn ui_specification(
    users: &[TargetUser],
    frs: &[Requirement],
    frontend: Option<&str>,
) -> UiSpecification {
    let layout = layout(users);
    UiSpecification {
        layout: layout.into(),
        breakpoints: vec![360, 768, 1280],
        navigation: if layout == "mobile_first" { "bottom tab bar" } else { "left sidebar" }.into(),
        framework: frontend
            .map_or_else(|| "framework-agnostic (the architecture was not known yet)".into(), str::to_owned),
        screens: frs
            .iter()
            .map(|fr| Screen {
                name: format!("{}Screen", pascal(&fr.title)),
                requirement: fr.id.clone(),
                components: vec![format!("{}List", pascal(&fr.title)), format!("{}Form", pascal(&fr.title))],
            })
            .collect(),
    }
}

pub fn journeys(personas: &[Persona], stories: &[Story]) -> Vec<Journey> {
    personas
        .iter()
        .map(|p| {
            let mut steps = vec!["Sign in".to_owned()];
            steps.extend(
                stories.iter().filter(|s| s.persona == p.role).map(|s| format!("{} ({})", s.text, s.id)),
            );
            steps.push("Sign out".into());
            Journey { persona: p.role.clone(), steps }
        })
        .collect()
}

pub fn component_specifications(ui: &UiSpecification) -> Vec<ComponentSpec> {
    let mut specs = Vec::new();
    for screen in &ui.screens {
        for name in &screen.components {
            let list = name.ends_with("List");
            specs.push(ComponentSpec {
                name: name.clone(),
                purpose: if list {
                    "shows the items, newest first, with search"
                } else {
                    "creates and edits one item, validating as the user types"
                }
                .into(),
                states: if list {
                    vec!["loading", "empty", "populated", "error"]
                } else {
                    vec!["pristine", "invalid", "saving", "saved", "error"]
                }
                .into_iter()
                .map(str::to_owned)
                .collect(),
                used_on: vec![screen.name.clone()],
            });
        }
    }
    specs
}

// ---- architect ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    pub responsibility: String,
    pub depends_on: Vec<String>,
    /// The functional requirement it implements, if it implements one.
    #[serde(default)]
    pub requirement: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemArchitecture {
    pub style: String,
    pub modules: Vec<Module>,
    pub data_store: String,
    pub deployment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TechnologyStack {
    pub frontend: String,
    pub backend: String,
    pub database: String,
    /// `desktop`, `mobile` or `both`: the client the architecture is built for first.
    pub primary_client: String,
    pub hosting: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub requirement: String,
}

pub fn system_architecture(tc: &TechnicalConstraints, frs: &[Requirement]) -> SystemArchitecture {
    let style = if tc.scale == "large" && tc.team_size >= 8 { "microservices" } else { "modular monolith" };
    let mut modules = vec![Module {
        name: "auth".into(),
        responsibility: "sign-in, sessions and roles".into(),
        depends_on: Vec::new(),
        requirement: None,
    }];
    for fr in frs {
        modules.push(Module {
            name: slug(&fr.title).replace('-', "_"),
            responsibility: format!("{} ({})", fr.description, fr.id),
            depends_on: vec!["auth".into()],
            requirement: Some(fr.id.clone()),
        });
    }
    if !tc.integrations.is_empty() {
        modules.push(Module {
            name: "integrations".into(),
            responsibility: format!("adapters for {}", tc.integrations.join(", ")),
            depends_on: vec!["auth".into()],
            requirement: None,
        });
    }
    if tc.offline {
        let all: Vec<String> = modules.iter().skip(1).map(|m| m.name.clone()).collect();
        modules.push(Module {
            name: "sync".into(),
            responsibility: "offline queue and conflict resolution".into(),
            depends_on: all,
            requirement: None,
        });
    }
    if !tc.compliance.is_empty() {
        modules.push(Module {
            name: "audit".into(),
            responsibility: format!("audit trail for {}", tc.compliance.join(", ")),
            depends_on: vec!["auth".into()],
            requirement: None,
        });
    }
    SystemArchitecture {
        style: style.into(),
        modules,
        data_store: "PostgreSQL".into(),
        deployment: match tc.scale.as_str() {
            "small" => "one container behind a managed load balancer",
            "medium" => "two or more containers behind a load balancer, managed PostgreSQL with a replica",
            _ => "Kubernetes across two zones, PostgreSQL with read replicas",
        }
        .into(),
    }
}

pub fn technology_stack(tc: &TechnicalConstraints) -> TechnologyStack {
    let (frontend, primary) = match tc.platform {
        Platform::Web => ("React (TypeScript), responsive web", "desktop"),
        Platform::Mobile => ("React Native (TypeScript)", "mobile"),
        Platform::Both => ("React (web) and React Native (mobile) sharing a TypeScript core", "both"),
    };
    TechnologyStack {
        frontend: frontend.into(),
        backend: "Rust (axum) HTTP API".into(),
        database: "PostgreSQL".into(),
        primary_client: primary.into(),
        hosting: if tc.scale == "large" { "Kubernetes" } else { "containers on a managed platform" }.into(),
    }
}

pub fn api_specifications(frs: &[Requirement]) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for fr in frs {
        let path = format!("/api/{}", slug(&fr.title));
        for (method, what) in [("GET", "list"), ("POST", "create")] {
            endpoints.push(Endpoint {
                method: method.into(),
                path: path.clone(),
                summary: format!("{what} {}", lower_first(&fr.title)),
                requirement: fr.id.clone(),
            });
        }
    }
    endpoints
}

/// The UX layout and the architecture's primary client agree?
pub fn layout_conflict(layout: &str, primary_client: &str) -> Option<String> {
    match (layout, primary_client) {
        ("mobile_first", "desktop") => Some(
            "the UI specification is mobile-first, but the architecture is desktop-primary (platform: web): \
             plan a mobile client or make the web front end mobile-first"
                .into(),
        ),
        ("desktop_primary", "mobile") => Some(
            "the UI specification is desktop-primary, but the architecture targets mobile first: \
             design for small screens first"
                .into(),
        ),
        _ => None,
    }
}

// ---- developer ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedModule {
    pub order: u32,
    pub name: String,
    pub depends_on: Vec<String>,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Milestone {
    pub week: u32,
    pub deliverable: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImplementationPlan {
    pub modules: Vec<PlannedModule>,
    pub milestones: Vec<Milestone>,
}

/// Modules in dependency order (ties in the architecture's order), with
/// their files, and a milestone per module spread over the deadline.
pub fn implementation_plan(
    arch: &SystemArchitecture,
    ui: Option<&UiSpecification>,
    deadline_weeks: u32,
) -> ImplementationPlan {
    let mut done: Vec<String> = Vec::new();
    let mut ordered: Vec<&Module> = Vec::new();
    while ordered.len() < arch.modules.len() {
        let next = arch.modules.iter().find(|m| {
            !done.contains(&m.name)
                && m.depends_on.iter().all(|d| done.contains(d) || !arch.modules.iter().any(|x| &x.name == d))
        });
        let Some(next) = next.or_else(|| arch.modules.iter().find(|m| !done.contains(&m.name))) else {
            break;
        };
        done.push(next.name.clone());
        ordered.push(next);
    }
    let n = ordered.len().max(1) as u32;
    let modules: Vec<PlannedModule> = ordered
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut files =
                vec![format!("backend/src/{}/mod.rs", m.name), format!("backend/src/{}/routes.rs", m.name)];
            if let Some(ui) = ui {
                for screen in ui.screens.iter().filter(|s| m.requirement.as_ref() == Some(&s.requirement)) {
                    files.push(format!("frontend/src/screens/{}.tsx", screen.name));
                    files
                        .extend(screen.components.iter().map(|c| format!("frontend/src/components/{c}.tsx")));
                }
            }
            files.push(format!("backend/tests/{}.rs", m.name));
            PlannedModule {
                order: i as u32 + 1,
                name: m.name.clone(),
                depends_on: m.depends_on.clone(),
                files,
            }
        })
        .collect();
    let milestones = modules
        .iter()
        .map(|m| Milestone {
            week: (deadline_weeks.max(1) * m.order).div_ceil(n),
            deliverable: format!("`{}` done, tested and deployed to staging", m.name),
        })
        .collect();
    ImplementationPlan { modules, milestones }
}

// ---- qa ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestCase {
    pub id: String,
    pub story: String,
    pub steps: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

pub fn test_plan(stories: &[Story]) -> Vec<TestCase> {
    let mut cases = Vec::new();
    for s in stories {
        for ac in &s.acceptance_criteria {
            cases.push(TestCase {
                id: format!("TC-{}", cases.len() + 1),
                story: s.id.clone(),
                steps: ac.clone(),
            });
        }
    }
    cases
}

/// Every check QA makes over the earlier outputs.
pub fn validation_checks(
    frs: &[Requirement],
    stories: &[Story],
    endpoints: &[Endpoint],
    plan: &ImplementationPlan,
    arch: &SystemArchitecture,
    layout_vs_stack: Option<String>,
    partial: &[String],
) -> Vec<Check> {
    let uncovered: Vec<&str> = frs
        .iter()
        .filter(|fr| !stories.iter().any(|s| s.requirement == fr.id))
        .map(|fr| fr.id.as_str())
        .collect();
    let no_ac: Vec<&str> =
        stories.iter().filter(|s| s.acceptance_criteria.is_empty()).map(|s| s.id.as_str()).collect();
    let no_api: Vec<&str> = frs
        .iter()
        .filter(|fr| !endpoints.iter().any(|e| e.requirement == fr.id))
        .map(|fr| fr.id.as_str())
        .collect();
    let unplanned: Vec<&str> = arch
        .modules
        .iter()
        .filter(|m| !plan.modules.iter().any(|p| p.name == m.name))
        .map(|m| m.name.as_str())
        .collect();
    let check = |name: &str, missing: &[&str], ok: &str, bad: &str| Check {
        name: name.into(),
        passed: missing.is_empty(),
        detail: if missing.is_empty() { ok.into() } else { format!("{bad}: {}", missing.join(", ")) },
    };
    vec![
        check(
            "every requirement has a user story",
            &uncovered,
            &format!("{} requirements, {} stories", frs.len(), stories.len()),
            "requirements without stories",
        ),
        check(
            "every story has acceptance criteria",
            &no_ac,
            "all stories have acceptance criteria",
            "stories without criteria",
        ),
        check(
            "every requirement has an API",
            &no_api,
            &format!("{} endpoints", endpoints.len()),
            "requirements without endpoints",
        ),
        check(
            "every module is planned",
            &unplanned,
            &format!("{} modules in build order", plan.modules.len()),
            "modules missing from the plan",
        ),
        Check {
            name: "UI and architecture agree on the primary client".into(),
            passed: layout_vs_stack.is_none(),
            detail: layout_vs_stack.unwrap_or_else(|| "they agree".into()),
        },
        Check {
            name: "every design output was produced".into(),
            passed: partial.is_empty(),
            detail: if partial.is_empty() {
                "all produced".into()
            } else {
                format!("stand-in defaults for: {}", partial.join(", "))
            },
        },
    ]
}

#[cfg(test)]
mod tests;
