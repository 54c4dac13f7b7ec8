//! The three-way merge of MessagePack values written by agents: any bytes
//! merge or conflict, never panic, and the merge is symmetric in outcome.
#![no_main]

use ensemble::context::merge::{Merge, three_way};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two length bytes split the rest into base (absent if its length byte
    // is 255), ours and theirs.
    let [b, o, rest @ ..] = data else { return };
    let (b, o) = (usize::from(*b), usize::from(*o));
    let base_len = if b == 255 { 0 } else { b.min(rest.len()) };
    let (base, rest) = rest.split_at(base_len);
    let (ours, theirs) = rest.split_at(o.min(rest.len()));
    let base = (b != 255).then_some(base);
    let forth = three_way(base, ours, theirs);
    let back = three_way(base, theirs, ours);
    assert_eq!(
        matches!(forth, Merge::Conflict { .. }),
        matches!(back, Merge::Conflict { .. }),
        "a merge conflicts both ways or neither"
    );
});
