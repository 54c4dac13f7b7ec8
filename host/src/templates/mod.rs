//! The template service: the host side of the `templates` interface.
//!
//! Agents render documents through it: `render(name, data)` renders
//! template `name` from the workflow's templates directory (minijinja) with
//! `data` (MessagePack) as its context. It bounds what renders may cost:
//! at most `max_renders` at once (further calls wait), a fuel budget per
//! render (a runaway loop ends with an error naming the template), a size
//! limit on the data; and it caches renders by template + data hash with a
//! time to live and a size bound. Errors name the template and the line.
//!
//! A render waits for its turn asynchronously (a `tokio::sync::Semaphore`,
//! which needs no particular executor): an agent waiting to render suspends
//! on its fiber and leaves its worker thread to other agents. The render
//! itself runs where the agent runs, bounded by its fuel.
//!
//! Architecture invariant: this module knows nothing of wasmtime (the
//! runtime calls it through [`crate::runtime::Templates`]).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::events::{EventKind, EventSink};
use crate::runtime::Rendered;

/// Limits of a template service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Renders at once; more wait their turn.
    pub max_renders: usize,
    /// minijinja fuel per render (about one unit per instruction).
    pub fuel: u64,
    /// The largest `data` a render accepts, in bytes.
    pub max_data: usize,
    /// How long a cached render stays valid.
    pub ttl: Duration,
    /// The most bytes of rendered text kept in the cache.
    pub cache_bytes: usize,
}

/// Default renders at once.
pub const DEFAULT_MAX_RENDERS: usize = 3;

impl Default for TemplateLimits {
    fn default() -> Self {
        Self {
            max_renders: DEFAULT_MAX_RENDERS,
            fuel: 5_000_000,
            max_data: 16 << 20,
            ttl: Duration::from_secs(3600),
            cache_bytes: 50 << 20,
        }
    }
}

struct Cached {
    text: String,
    at: Instant,
}

#[derive(Default)]
struct RenderCache {
    entries: HashMap<[u8; 32], Cached>,
    /// Insertion order, oldest first.
    order: VecDeque<[u8; 32]>,
    bytes: usize,
}

/// Templates from one directory, rendered under [`TemplateLimits`].
pub struct TemplateService {
    env: minijinja::Environment<'static>,
    dir: PathBuf,
    limits: TemplateLimits,
    /// One permit per render allowed at once.
    turns: tokio::sync::Semaphore,
    cache: Mutex<RenderCache>,
}

impl std::fmt::Debug for TemplateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateService")
            .field("dir", &self.dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TemplateService {
    /// Templates from `dir`, opened once: every template (and every one it
    /// includes or extends) is read through it, so no name, `..` or
    /// symbolic link leads outside it.
    pub fn new(dir: &Path, limits: TemplateLimits) -> Self {
        let mut env = minijinja::Environment::new();
        env.set_loader(loader(dir));
        env.set_fuel(Some(limits.fuel));
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        Self {
            env,
            dir: dir.to_owned(),
            limits: TemplateLimits { max_renders: limits.max_renders.max(1), ..limits },
            turns: tokio::sync::Semaphore::new(
                limits.max_renders.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            ),
            cache: Mutex::new(RenderCache::default()),
        }
    }

    /// The limits renders run under.
    pub fn limits(&self) -> TemplateLimits {
        self.limits
    }

    /// Render template `name` with `data` (MessagePack) for `agent`. Waits
    /// (asynchronously) while `max_renders` renders run.
    pub async fn render(
        &self,
        agent: &str,
        name: &str,
        data: &[u8],
        events: &EventSink,
    ) -> Result<Rendered, String> {
        if data.len() > self.limits.max_data {
            return Err(format!(
                "template `{name}`: data is {} bytes; the limit is {}",
                data.len(),
                self.limits.max_data
            ));
        }
        let key = {
            let mut h = blake3::Hasher::new();
            h.update(name.as_bytes());
            h.update(&[0]);
            h.update(data);
            *h.finalize().as_bytes()
        };
        if let Some(text) = self.cached(&key) {
            events.send(EventKind::Rendered {
                agent: agent.to_owned(),
                template: name.to_owned(),
                cached: true,
                elapsed: Duration::ZERO,
                error: None,
            });
            return Ok(Rendered { text, cached: true });
        }
        // Never closed, so `acquire` cannot fail; a closed one would only
        // mean no limit.
        let _turn = self.turns.acquire().await.ok();
        events.send(EventKind::RenderStarted { agent: agent.to_owned(), template: name.to_owned() });
        let started = Instant::now();
        let rendered = self.render_now(name, data);
        events.send(EventKind::Rendered {
            agent: agent.to_owned(),
            template: name.to_owned(),
            cached: false,
            elapsed: started.elapsed(),
            error: rendered.as_ref().err().cloned(),
        });
        if let Ok(text) = &rendered {
            self.remember(key, text);
        }
        rendered.map(|text| Rendered { text, cached: false })
    }

    fn render_now(&self, name: &str, data: &[u8]) -> Result<String, String> {
        let value = crate::context::decode_value(data)
            .map_err(|e| format!("template `{name}`: data is not usable MessagePack ({e})"))?;
        let template = self.env.get_template(name).map_err(|e| describe(name, &self.dir, &e))?;
        template.render(minijinja::Value::from_serialize(&value)).map_err(|e| describe(name, &self.dir, &e))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<String> {
        let cache = lock(&self.cache);
        cache.entries.get(key).filter(|c| c.at.elapsed() < self.limits.ttl).map(|c| c.text.clone())
    }

    fn remember(&self, key: [u8; 32], text: &str) {
        if text.len() > self.limits.cache_bytes {
            return;
        }
        let mut cache = lock(&self.cache);
        if let Some(old) = cache.entries.insert(key, Cached { text: text.to_owned(), at: Instant::now() }) {
            cache.bytes -= old.text.len();
            cache.order.retain(|k| k != &key);
        }
        cache.bytes += text.len();
        cache.order.push_back(key);
        while cache.bytes > self.limits.cache_bytes {
            let Some(oldest) = cache.order.pop_front() else { break };
            if let Some(gone) = cache.entries.remove(&oldest) {
                cache.bytes -= gone.text.len();
            }
        }
    }
}

/// minijinja's loader for `dir`: like its `path_loader` (names are
/// `/`-separated; a part starting with `.` is refused), but reading through
/// the directory opened once, so a symbolic link that leads outside is not
/// followed, and a refused name says why instead of "not found".
fn loader(dir: &Path) -> impl Fn(&str) -> Result<Option<String>, minijinja::Error> + Send + Sync + 'static {
    use minijinja::{Error, ErrorKind};
    let root = crate::confined::Root::open(dir);
    let shown = dir.to_owned();
    move |name| {
        let root = root.as_ref().map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot open the templates directory {}: {e}", shown.display()),
            )
        })?;
        let mut rel = PathBuf::new();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            if part.starts_with('.') || part.contains('\\') {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "the name is refused: a part starting with `.` (such as `..`) or holding `\\` could leave {}",
                        shown.display()
                    ),
                ));
            }
            rel.push(part);
        }
        match root.dir().read_to_string(&rel) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if crate::confined::is_escape(&e) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("it leads outside {} (through a symbolic link), so it is not read", shown.display()),
            )),
            Err(e) => Err(Error::new(ErrorKind::InvalidOperation, "could not read template").with_source(e)),
        }
    }
}

/// `template `x` line N: what went wrong`, naming the file the error is in
/// (an included template's, if that is where it is).
fn describe(name: &str, dir: &Path, e: &minijinja::Error) -> String {
    let file = e.name().unwrap_or(name);
    let place = match e.line() {
        Some(line) => format!("{}:{line}", dir.join(file).display()),
        None => dir.join(file).display().to_string(),
    };
    let what = match e.kind() {
        minijinja::ErrorKind::TemplateNotFound => format!("no template `{name}` in {}", dir.display()),
        minijinja::ErrorKind::OutOfFuel => "the render took too long (out of fuel)".to_owned(),
        _ => e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind())),
    };
    format!("template `{name}` ({place}): {what}")
}

impl crate::runtime::Templates for TemplateService {
    fn render<'a>(
        &'a self,
        agent: &'a str,
        name: &'a str,
        data: &'a [u8],
        events: &'a EventSink,
    ) -> crate::runtime::RenderFuture<'a> {
        Box::pin(TemplateService::render(self, agent, name, data, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(files: &[(&str, &str)], limits: TemplateLimits) -> (tempfile::TempDir, TemplateService) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let service = TemplateService::new(dir.path(), limits);
        (dir, service)
    }

    fn data(value: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap()
    }

    #[tokio::test]
    async fn renders_with_msgpack_data_and_caches() {
        let (_d, s) = service(
            &[("a.md", "# {{ title }}\n{% for x in items %}- {{ x }}\n{% endfor %}")],
            Default::default(),
        );
        let events = EventSink::new();
        let mut rx = events.subscribe();
        let d = data(&serde_json::json!({"title": "Plan", "items": [1, 2]}));
        let first = s.render("ag", "a.md", &d, &events).await.unwrap();
        assert_eq!((first.text.as_str(), first.cached), ("# Plan\n- 1\n- 2\n", false));
        let second = s.render("ag", "a.md", &d, &events).await.unwrap();
        assert_eq!((second.text.as_str(), second.cached), ("# Plan\n- 1\n- 2\n", true));
        let mut cached = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let EventKind::Rendered { cached: c, .. } = e.kind {
                cached.push(c);
            }
        }
        assert_eq!(cached, [false, true]);
    }

    #[tokio::test]
    async fn errors_name_the_template_and_line() {
        let (_d, s) = service(&[("bad.md", "line one\n{{ missing.field }}\n")], Default::default());
        let e = s.render("ag", "bad.md", &data(&serde_json::json!({})), &EventSink::new()).await.unwrap_err();
        assert!(e.contains("bad.md:2"), "{e}");
        let e =
            s.render("ag", "nope.md", &data(&serde_json::json!({})), &EventSink::new()).await.unwrap_err();
        assert!(e.contains("no template `nope.md`"), "{e}");
        let e = s.render("ag", "bad.md", b"\x92\x01", &EventSink::new()).await.unwrap_err();
        assert!(e.contains("not usable MessagePack"), "{e}");
    }

    #[tokio::test]
    async fn a_runaway_render_runs_out_of_fuel() {
        let limits = TemplateLimits { fuel: 10_000, ..Default::default() };
        let (_d, s) = service(
            &[(
                "loop.md",
                "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}",
            )],
            limits,
        );
        let e =
            s.render("ag", "loop.md", &data(&serde_json::json!({})), &EventSink::new()).await.unwrap_err();
        assert!(e.contains("loop.md") && e.contains("out of fuel"), "{e}");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_expires() {
        let limits = TemplateLimits { cache_bytes: 10, ttl: Duration::from_millis(1), ..Default::default() };
        let (_d, s) = service(&[("t", "{{ v }}")], limits);
        let ev = EventSink::new();
        s.render("ag", "t", &data(&serde_json::json!({"v": "123456"})), &ev).await.unwrap();
        s.render("ag", "t", &data(&serde_json::json!({"v": "abcdef"})), &ev).await.unwrap();
        assert_eq!(lock(&s.cache).entries.len(), 1, "12 bytes do not fit in 10: the oldest went");
        std::thread::sleep(Duration::from_millis(5));
        let key = lock(&s.cache).order[0];
        assert!(s.cached(&key).is_none(), "expired");
    }
}
