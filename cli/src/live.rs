//! What `ensemble run` and `resume` show while a run happens, on stderr:
//!
//! - on a terminal, live bars (indicatif): a header with the totals and each
//!   running group's barrier state, one bar per running agent fed by its own
//!   `progress.report` calls, and a line above the bars per thing that
//!   matters (ends, retries, barrier decisions, validations);
//! - elsewhere (CI logs, pipes), those lines only, each with the time since
//!   the run started;
//! - with `--events json`, every event of the library as one JSON line on
//!   stdout instead (and nothing on stderr).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use ensemble::events::{Event, EventKind};

/// How the run is shown.
pub(super) enum LiveView {
    Off,
    Lines(Lines),
    Bars(Box<Bars>),
    /// JSON lines on stdout.
    Json,
}

impl LiveView {
    /// `json`: stream events; `quiet`: nothing; `interactive`: stderr is a
    /// terminal, draw bars there.
    pub(super) fn new(json: bool, quiet: bool, interactive: bool) -> Self {
        if json {
            Self::Json
        } else if quiet {
            Self::Off
        } else if interactive {
            Self::Bars(Box::new(Bars::new(ProgressDrawTarget::stderr())))
        } else {
            Self::Lines(Lines::default())
        }
    }

    /// Show `event`. Output errors are ignored: the view must never stop a run.
    pub(super) fn show(&mut self, out: &mut dyn Write, err: &mut dyn Write, event: &Event) {
        match self {
            Self::Off => {}
            Self::Lines(lines) => {
                if let Some(line) = lines.line(&event.kind) {
                    let _ = writeln!(err, "{:>8.2}s  {line}", event.at.as_secs_f64());
                }
            }
            Self::Bars(bars) => bars.show(event),
            Self::Json => {
                if let Ok(line) = serde_json::to_string(event) {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }

    /// Events were lost (the reader fell behind by `missed`).
    pub(super) fn missed(&mut self, out: &mut dyn Write, missed: u64) {
        if let Self::Json = self {
            let _ = writeln!(out, "{{\"event\":\"lagged\",\"missed\":{missed}}}");
        }
    }

    /// The run is over: clear the bars before the summary prints.
    pub(super) fn finish(&mut self) {
        if let Self::Bars(bars) = self {
            bars.finish();
        }
    }
}

/// One line per thing that matters.
#[derive(Default)]
pub(super) struct Lines {
    /// The last quarter of progress shown per agent, so progress prints at
    /// most four lines per agent.
    quarters: HashMap<String, u8>,
}

impl Lines {
    fn line(&mut self, kind: &EventKind) -> Option<String> {
        if let EventKind::Progress { agent, done, message } = kind {
            let quarter = (done * 4.0).floor() as u8;
            let shown = self.quarters.entry(agent.clone()).or_insert(0);
            if quarter <= *shown {
                return None;
            }
            *shown = quarter;
            return Some(format!("progress {agent} {:>3.0}% {message}", done * 100.0));
        }
        notable(kind)
    }
}

/// Components this large get a line when they load (they take a while to
/// compile); smaller ones load in milliseconds, and say nothing.
const NOTABLE_COMPONENT_BYTES: u64 = 1 << 20;

/// A component's file name, as the live view shows it.
fn file_name(component: &str) -> &str {
    std::path::Path::new(component).file_name().and_then(|n| n.to_str()).unwrap_or(component)
}

/// The line for an event worth one, progress aside.
fn notable(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::ComponentLoadStarted { component, bytes, .. } if *bytes >= NOTABLE_COMPONENT_BYTES => {
            format!("load     {} ({})…", file_name(component), super::cache::bytes(*bytes))
        }
        EventKind::ComponentLoaded { component, bytes, cached, elapsed, error: None, .. }
            if *bytes >= NOTABLE_COMPONENT_BYTES =>
        {
            let (name, size) = (file_name(component), super::cache::bytes(*bytes));
            if *cached {
                format!("loaded   {name} ({size}) from the compiled cache in {elapsed:.1?}")
            } else {
                format!("compiled {name} ({size}) in {elapsed:.1?} (first run only: cached for the next)")
            }
        }
        EventKind::AgentStarted { agent, attempt: 1 } => format!("start    {agent}"),
        EventKind::AgentStarted { agent, attempt } => format!("start    {agent} (attempt {attempt})"),
        EventKind::AgentSucceeded { agent, elapsed } => format!("done     {agent} in {elapsed:.1?}"),
        EventKind::CacheHit { agent, saved } => format!("cached   {agent} (saved {saved:.1?})"),
        EventKind::AgentFailed { error, .. } => format!("FAILED   {error}"),
        EventKind::AgentSkipped { agent, because } => format!("skipped  {agent}: {because}"),
        EventKind::AgentPartial { agent, defaults, because } => {
            format!("partial  {agent}: {because}; defaults for {}", list(defaults))
        }
        EventKind::AgentCancelled { agent } => format!("cancel   {agent}"),
        EventKind::AgentStopped { agent } => format!("stopped  {agent} (by its group's barrier)"),
        EventKind::TimedOut { agent, after, .. } => format!("timeout  {agent} after {after:.1?}"),
        EventKind::AgentRetrying { agent, attempt, after, .. } => {
            format!("retry    {agent}: attempt {attempt} in {after:.1?}")
        }
        EventKind::GroupStarted { group, agents } => format!("group    {group}: {}", agents.join(" ∥ ")),
        EventKind::GroupTimedOut { group, running } => {
            format!("barrier  {group}: timeout with {} unfinished", running.join(", "))
        }
        EventKind::BarrierDecision { group, decision, reason } => {
            format!("barrier  {group}: {}: {reason}", decision.name())
        }
        EventKind::Validated { validator, subject, passed, findings, error, .. } => {
            let verdict = match (passed, error) {
                (_, Some(e)) => format!("error: {e}"),
                (true, None) => "passed".to_owned(),
                (false, None) => "REJECTED".to_owned(),
            };
            format!("validate {validator} → {subject}: {verdict} ({findings} findings)")
        }
        EventKind::GroupDone { group, succeeded } => {
            format!("group    {group}: {}", if *succeeded { "done" } else { "FAILED" })
        }
        _ => return None,
    })
}

pub(super) fn list(keys: &[String]) -> String {
    if keys.is_empty() { "nothing".to_owned() } else { keys.join(", ") }
}

/// Where an agent is, as far as the events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum State {
    Queued,
    Running,
    /// Waiting to retry, or stopped by its group's barrier (to re-run).
    Waiting,
    Done,
    Failed,
    /// Skipped or cancelled.
    Off,
}

/// Totals and barrier states, from the events so far.
#[derive(Debug, Default)]
struct Totals {
    agents: usize,
    states: HashMap<String, State>,
    /// How many agents are in each state (kept, not counted: runs can be large).
    counts: [usize; 6],
    /// Per running group (in name order): its members and barrier state.
    groups: BTreeMap<String, (Vec<String>, String)>,
}

impl Totals {
    fn apply(&mut self, kind: &EventKind) {
        let mut set = |agent: &str, state: State| {
            if let Some(old) = self.states.insert(agent.to_owned(), state) {
                self.counts[old as usize] -= 1;
            }
            self.counts[state as usize] += 1;
        };
        match kind {
            EventKind::RunStarted { agents, .. } => self.agents = *agents,
            EventKind::Queued { agent } => set(agent, State::Queued),
            EventKind::AgentStarted { agent, .. } => set(agent, State::Running),
            EventKind::AgentRetrying { agent, .. } | EventKind::AgentStopped { agent } => {
                set(agent, State::Waiting)
            }
            EventKind::AgentSucceeded { agent, .. }
            | EventKind::AgentPartial { agent, .. }
            | EventKind::CacheHit { agent, .. } => set(agent, State::Done),
            EventKind::AgentFailed { agent, .. } => set(agent, State::Failed),
            EventKind::AgentSkipped { agent, .. } | EventKind::AgentCancelled { agent } => {
                set(agent, State::Off)
            }
            EventKind::GroupStarted { group, agents } => {
                self.groups.insert(group.clone(), (agents.clone(), "waiting for all".into()));
            }
            EventKind::GroupTimedOut { group, .. } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.1 = "timed out".into();
                }
            }
            EventKind::BarrierDecision { group, decision, .. } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.1 = decision.name().to_owned();
                }
            }
            EventKind::GroupDone { group, .. } => {
                self.groups.remove(group);
            }
            _ => {}
        }
    }

    fn count(&self, state: State) -> usize {
        self.counts[state as usize]
    }

    fn header(&self) -> String {
        let failed = self.count(State::Failed);
        let mut text = format!(
            "{}/{} done · {} running · {} queued{}",
            self.count(State::Done),
            self.agents,
            self.count(State::Running),
            self.count(State::Queued),
            if failed > 0 { format!(" · {failed} FAILED") } else { String::new() }
        );
        for (group, (members, state)) in &self.groups {
            let finished = members
                .iter()
                .filter(|m| matches!(self.states.get(*m), Some(State::Done | State::Failed | State::Off)))
                .count();
            text.push_str(&format!(" · group {group}: {finished}/{}, {state}", members.len()));
        }
        text
    }
}

/// The live bars.
pub(super) struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    /// Per running agent, and per component loading (keyed `\0` + its path).
    bars: HashMap<String, ProgressBar>,
    totals: Totals,
    style: ProgressStyle,
    /// The spinners of components loading.
    loading: ProgressStyle,
}

impl Bars {
    fn new(target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(100));
        let style = ProgressStyle::with_template(
            "  {prefix:<16.bold} [{bar:30}] {percent:>3}% {elapsed:>4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let loading = ProgressStyle::with_template("  {spinner} {prefix:<16.bold} {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Self { multi, header, bars: HashMap::new(), totals: Totals::default(), style, loading }
    }

    fn show(&mut self, event: &Event) {
        self.totals.apply(&event.kind);
        match &event.kind {
            // A spinner per component being compiled (or read from the cache).
            EventKind::ComponentLoadStarted { component, bytes, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(self.loading.clone());
                bar.set_prefix(file_name(component).to_owned());
                bar.set_message(format!("{} · compiling (first run only)", super::cache::bytes(*bytes)));
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Some(old) = self.bars.insert(format!("\0{component}"), bar) {
                    old.finish_and_clear();
                }
            }
            EventKind::ComponentLoaded { component, .. } => {
                if let Some(bar) = self.bars.remove(&format!("\0{component}")) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            EventKind::AgentStarted { agent, attempt } => {
                let bar = self.multi.add(ProgressBar::new(1000));
                bar.set_style(self.style.clone());
                bar.set_prefix(if *attempt > 1 { format!("{agent} #{attempt}") } else { agent.clone() });
                if let Some(old) = self.bars.insert(agent.clone(), bar) {
                    old.finish_and_clear();
                }
            }
            EventKind::Progress { agent, done, message } => {
                if let Some(bar) = self.bars.get(agent) {
                    bar.set_position((f64::from(*done) * 1000.0) as u64);
                    bar.set_message(message.clone());
                }
            }
            EventKind::Released { agent, validating: None, .. } => {
                if let Some(bar) = self.bars.remove(agent) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            _ => {}
        }
        if let Some(line) =
            notable(&event.kind).filter(|_| !matches!(event.kind, EventKind::AgentStarted { .. }))
        {
            let _ = self.multi.println(format!("{:>8.2}s  {line}", event.at.as_secs_f64()));
        }
        if self.totals.agents == 0 {
            self.header.set_message("loading components");
        } else {
            self.header.set_message(self.totals.header());
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;
    use ensemble::events::{Decision, PoolUsage};

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            let mut screen = self.0.lock().unwrap();
            screen.push_str(s);
            screen.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn event(at_ms: u64, kind: EventKind) -> Event {
        Event { at: Duration::from_millis(at_ms), kind }
    }

    fn run_events() -> Vec<Event> {
        let s = String::from;
        vec![
            event(0, EventKind::RunStarted { run_id: s("r"), workflow: s("w"), agents: 3 }),
            event(1, EventKind::GroupStarted { group: s("design"), agents: vec![s("ux"), s("arch")] }),
            event(2, EventKind::Queued { agent: s("ux") }),
            event(2, EventKind::Queued { agent: s("arch") }),
            event(
                3,
                EventKind::Admitted {
                    agent: s("ux"),
                    validating: None,
                    cpu: 10,
                    memory: 10,
                    pool: PoolUsage::default(),
                },
            ),
            event(3, EventKind::AgentStarted { agent: s("ux"), attempt: 1 }),
            event(
                3,
                EventKind::Admitted {
                    agent: s("arch"),
                    validating: None,
                    cpu: 10,
                    memory: 10,
                    pool: PoolUsage::default(),
                },
            ),
            event(3, EventKind::AgentStarted { agent: s("arch"), attempt: 1 }),
            event(5, EventKind::Progress { agent: s("ux"), done: 0.5, message: s("wireframes") }),
        ]
    }

    #[test]
    fn totals_follow_agents_and_barriers() {
        let mut totals = Totals::default();
        for e in run_events() {
            totals.apply(&e.kind);
        }
        assert_eq!(totals.header(), "0/3 done · 2 running · 0 queued · group design: 0/2, waiting for all");
        let s = String::from;
        totals.apply(&EventKind::Released { agent: s("ux"), validating: None, pool: PoolUsage::default() });
        totals.apply(&EventKind::AgentSucceeded { agent: s("ux"), elapsed: Duration::from_millis(4) });
        totals.apply(&EventKind::GroupTimedOut { group: s("design"), running: vec![s("arch")] });
        totals.apply(&EventKind::BarrierDecision {
            group: s("design"),
            decision: Decision::ContinueWithPartial,
            reason: s("r"),
        });
        assert_eq!(
            totals.header(),
            "1/3 done · 1 running · 0 queued · group design: 1/2, continue_with_partial"
        );
        totals.apply(&EventKind::GroupDone { group: s("design"), succeeded: true });
        assert_eq!(totals.header(), "1/3 done · 1 running · 0 queued");
    }

    #[test]
    fn bars_draw_each_running_agent_with_its_progress() {
        let screen = Screen::default();
        let mut bars = Bars::new(ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), 200));
        for e in run_events() {
            bars.show(&e);
            std::thread::sleep(Duration::from_millis(2));
        }
        bars.header.tick();
        let drawn = screen.0.lock().unwrap().clone();
        assert!(drawn.contains("ux") && drawn.contains("arch"), "{drawn}");
        assert!(drawn.contains(" 50% ") && drawn.contains("wireframes"), "{drawn}");
        assert!(drawn.contains("group design: 0/2, waiting for all"), "{drawn}");
        bars.finish();
    }

    #[test]
    fn large_components_loading_get_lines_small_ones_none() {
        let mut lines = Lines::default();
        let started = |bytes| EventKind::ComponentLoadStarted {
            component: "/w/agents/python.wasm".into(),
            agents: vec!["a".into()],
            bytes,
        };
        let loaded = |bytes, cached| EventKind::ComponentLoaded {
            component: "/w/agents/python.wasm".into(),
            agents: vec!["a".into()],
            bytes,
            cached,
            elapsed: Duration::from_millis(14_200),
            error: None,
        };
        let big = 18 << 20;
        assert_eq!(lines.line(&started(big)).as_deref(), Some("load     python.wasm (18.0 MiB)…"));
        let compiled = lines.line(&loaded(big, false)).expect("a line");
        assert!(
            compiled.starts_with("compiled python.wasm (18.0 MiB) in 14.2s (first run only"),
            "{compiled}"
        );
        let cached = lines.line(&loaded(big, true)).expect("a line");
        assert!(cached.contains("from the compiled cache"), "{cached}");
        assert!(lines.line(&started(2048)).is_none() && lines.line(&loaded(2048, false)).is_none());
    }

    #[test]
    fn lines_print_progress_by_quarters() {
        let mut lines = Lines::default();
        let p = |done| EventKind::Progress { agent: "a".into(), done, message: "m".into() };
        assert!(lines.line(&p(0.1)).is_none());
        assert!(lines.line(&p(0.3)).is_some());
        assert!(lines.line(&p(0.4)).is_none());
        assert!(lines.line(&p(1.0)).is_some());
    }
}
