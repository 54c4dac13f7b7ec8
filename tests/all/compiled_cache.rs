//! Compiled components are cached on disk; a second load does not compile.

use ensemble::runtime::LoadStats;
use ensemble::{Runtime, RuntimeConfig};
use ensemble_tests::{Project, writer};

fn runtime(cache: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: Some(cache.to_owned()), ..RuntimeConfig::default() })
        .expect("runtime starts")
}

#[test]
fn second_load_hits_the_cache() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let path = project.path().join("a.wasm");
    let cache = project.path().join("compiled");

    let first = runtime(&cache);
    first.load_file("a", &path).expect("loads");
    assert_eq!(first.load_stats(), LoadStats { compiled: 1, disk_hits: 0, memory_hits: 0 });
    first.load_file("a", &path).expect("loads again");
    assert_eq!(first.load_stats().memory_hits, 1, "same process: no second compile");
    assert_eq!(first.load_stats().compiled, 1);

    // A new process (a new runtime) with the same cache directory.
    let second = runtime(&cache);
    let component = second.load_file("a", &path).expect("loads from cache");
    assert_eq!(second.load_stats(), LoadStats { compiled: 0, disk_hits: 1, memory_hits: 0 });
    assert_eq!(component.content_hash.len(), 64);
}

#[test]
fn a_damaged_cache_entry_is_recompiled() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let path = project.path().join("a.wasm");
    let cache = project.path().join("compiled");
    runtime(&cache).load_file("a", &path).expect("loads");

    for entry in std::fs::read_dir(&cache).expect("cache dir exists") {
        let file = entry.expect("entry").path();
        let mut bytes = std::fs::read(&file).expect("read entry");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&file, bytes).expect("damage entry");
    }
    let again = runtime(&cache);
    again.load_file("a", &path).expect("loads despite the damage");
    assert_eq!(again.load_stats(), LoadStats { compiled: 1, disk_hits: 0, memory_hits: 0 });
}
